"""The embedded MQTT broker (amqtt) that embedded mode runs inside the hub's own event loop.

Production points `CITYHUB_MQTT_URL` at Mosquitto instead (docs/decisions/0002-embedded-broker.md).
Who may connect, publish and subscribe is decided by a `BrokerGate` the caller supplies (ingest's
API-key and sensor-ownership rules); anonymous clients are refused.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import amqtt.broker
from amqtt.adapters import StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from shared.errors import ConfigError
from shared.netutil import ensure_port_free

logger = logging.getLogger(__name__)

BROKER_HINT = "or set CITYHUB_MQTT_URL=mqtt://host:port to use the broker already there"


class BrokerGate(Protocol):
    """The rules the embedded broker enforces."""

    async def authenticate(self, username: str | None, password: str | None) -> bool:
        """True when this login may connect."""
        ...

    def may_publish(self, username: str | None, topic: str) -> bool:
        """True when this user may publish to `topic`."""
        ...

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool:
        """True when this user may subscribe to `topic_filter`."""
        ...


class GateAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type hints
    """amqtt authentication plugin asking the gate (anonymous and unknown logins refused)."""

    @dataclass
    class Config:
        gate: Any = None

    async def authenticate(self, *, session: Session) -> bool:
        gate: BrokerGate = self.config.gate
        if not await gate.authenticate(session.username, session.password):
            return False
        # amqtt 0.12.1 publishes a will without asking the topic plugin, so a will naming a topic
        # the client may not publish to is refused here, at CONNECT, as Mosquitto does.
        if session.will_flag:
            return session.will_topic is not None and gate.may_publish(
                session.username, session.will_topic
            )
        return True


class GateTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]  # amqtt ships no type hints
    """amqtt topic plugin asking the gate about every publish and subscribe."""

    @dataclass
    class Config:
        gate: Any = None

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Any = None
    ) -> bool:
        gate: BrokerGate = self.config.gate
        if session is None or topic is None:
            return False
        if action == Action.PUBLISH:
            return gate.may_publish(session.username, topic)
        if action == Action.SUBSCRIBE:
            return gate.may_subscribe(session.username, topic)
        return True  # delivery to a subscriber: its subscription was checked


class _ClosingStreamWriter(StreamWriterAdapter):  # type: ignore[misc]  # amqtt has no types
    """amqtt 0.12.1 drains before closing a client's stream and skips the close when the drain
    fails — as it does when the client hung up first — so every such disconnect leaked a socket.
    This one closes the transport whatever happened."""

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._writer.close()  # idempotent


def broker_config(host: str, port: int, gate: BrokerGate) -> dict[str, object]:
    """amqtt configuration: one TCP listener, our gate, no $SYS chatter, no packet logging."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            f"{__name__}.GateAuthPlugin": {"gate": gate},
            f"{__name__}.GateTopicPlugin": {"gate": gate},
        },
    }


@asynccontextmanager
async def embedded_broker(host: str, port: int, gate: BrokerGate) -> AsyncIterator[Broker]:
    """Run an MQTT broker on host:port, enforcing `gate`, for the duration of the block."""
    ensure_port_free(
        host,
        port,
        "CITYHUB_MQTT_PORT",
        hint=BROKER_HINT,
    )
    amqtt.broker.StreamWriterAdapter = _ClosingStreamWriter  # what the broker wraps streams in
    broker = Broker(broker_config(host, port, gate))
    try:
        await broker.start()
    except OSError as exc:
        raise ConfigError(f"embedded MQTT broker could not listen on {host}:{port}: {exc}") from exc
    logger.info("embedded MQTT broker listening on %s:%d", host, port)
    try:
        yield broker
    finally:
        await broker.shutdown()
