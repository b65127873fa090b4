"""The embedded MQTT broker (amqtt) that embedded mode runs inside the hub's own event loop.

Production points `CITYHUB_MQTT_URL` at Mosquitto instead (docs/decisions/0002-embedded-broker.md).
Who may connect, publish and subscribe is decided by a `BrokerGate` the caller supplies (ingest's
API-key and sensor-ownership rules); anonymous clients are refused.

With a `Handoff`, the broker routes nothing: every message a client publishes (and every last will)
goes straight to the handoff, and a QoS 1 PUBLISH is acknowledged only once the handoff returned,
that is once what the message caused is durable. amqtt itself acknowledges a QoS 1 PUBLISH as soon
as the message is in its in-memory queue, so a crash, or the publisher merely disconnecting before
the queue drained, lost acknowledged messages.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import amqtt.broker
from amqtt.adapters import StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.pubcomp import PubcompPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.pubrec import PubrecPacket
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.plugins.manager import PluginManager
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


class LoginRevokedError(Exception):
    """Raised by a handoff when the publisher's login no longer holds (its key was revoked
    since it connected): the broker drops the message and closes that client's connection."""


class Handoff(Protocol):
    """Where the broker delivers what clients publish, instead of routing it to subscribers. The
    broker hands over every publish of a logged-in client: the handoff applies the gate's topic
    rule itself (and may keep a refusal, where amqtt would drop the message silently)."""

    async def deliver(self, username: str | None, topic: str, payload: bytes) -> None:
        """Take one message; return once what it caused is durable (the broker then
        acknowledges it to the publisher)."""
        ...


# The handoff of each running broker, found by its plugin manager: amqtt builds protocol handlers
# itself and gives them nothing of ours but that.
_HANDOFFS: weakref.WeakKeyDictionary[PluginManager, Handoff] = weakref.WeakKeyDictionary()


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


def _routable(topic: str) -> bool:
    """A topic amqtt itself would route; it closes the connection of a client publishing to any
    other (empty, wildcards, `$`), so those keep amqtt's own path."""
    return bool(topic) and "#" not in topic and "+" not in topic and not topic.startswith("$")


class _HandoffProtocolHandler(BrokerProtocolHandler):  # type: ignore[misc]  # amqtt has no types
    """amqtt's broker-side protocol handler, except that a broker with a handoff delivers each
    PUBLISH to it and acknowledges only after the handoff returned (PUBACK for QoS 1; PUBREC for
    QoS 2), never through amqtt's in-memory queue. amqtt reads each PUBLISH in a task of its own,
    so a slow commit holds back only that message; messages still start in the order they came,
    and the handoff takes each one in before its first await."""

    async def handle_publish(self, publish_packet: PublishPacket) -> None:
        handoff = _HANDOFFS.get(self.plugins_manager)
        topic: str | None = publish_packet.topic_name
        data: bytes | bytearray | None = publish_packet.data
        if handoff is None or self.session is None or not topic or data is None:
            await super().handle_publish(publish_packet)
            return
        if not _routable(topic):
            await super().handle_publish(publish_packet)  # amqtt closes the connection
            return
        qos: int = publish_packet.qos or 0
        header = publish_packet.variable_header
        packet_id: int | None = header.packet_id if header is not None else None
        try:
            await handoff.deliver(self.session.username, topic, bytes(data))
        except LoginRevokedError:
            logger.info(
                "closing the connection of %r: its login was revoked", self.session.username
            )
            if self.writer is not None:
                await self.writer.close()  # amqtt then ends the session as for a lost client
            return
        except Exception:  # a bug: say so, and leave the message unacknowledged
            logger.exception("handing over a message on %s failed; not acknowledged", topic)
            return
        if qos == QOS_1 and packet_id is not None:
            await self._send_packet(PubackPacket.build(packet_id))
        elif qos == QOS_2 and packet_id is not None:
            await self._exactly_once(packet_id)

    async def _exactly_once(self, packet_id: int) -> None:
        """The rest of QoS 2 once the message is delivered: PUBREC, wait for PUBREL, PUBCOMP."""
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pubrel_waiters[packet_id] = waiter  # handle_pubrel (amqtt's) resolves it
        try:
            await self._send_packet(PubrecPacket.build(packet_id))
            await waiter
        finally:
            self._pubrel_waiters.pop(packet_id, None)
        await self._send_packet(PubcompPacket.build(packet_id))


class _HandoffBroker(Broker):  # type: ignore[misc]  # amqtt ships no type hints
    """amqtt's broker, except that with a handoff a client's last will goes to the handoff too
    (amqtt publishes a will through this method; ordinary publishes never reach it then)."""

    def __init__(self, config: dict[str, object], handoff: Handoff | None) -> None:
        super().__init__(config)
        self._handoff = handoff
        if handoff is not None:
            _HANDOFFS[self.plugins_manager] = handoff

    async def _broadcast_message(
        self,
        session: Session | None,
        topic: str | None,
        data: bytes | bytearray | None,
        force_qos: int | None = None,
    ) -> None:
        if self._handoff is None or session is None or topic is None or data is None:
            await super()._broadcast_message(session, topic, data, force_qos)
            return
        try:
            await self._handoff.deliver(session.username, topic, bytes(data))
        except Exception:
            logger.exception("handing over the last will on %s failed", topic)


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
async def embedded_broker(
    host: str, port: int, gate: BrokerGate, handoff: Handoff | None = None
) -> AsyncIterator[Broker]:
    """Run an MQTT broker on host:port, enforcing `gate`, for the duration of the block; with a
    `handoff`, every published message goes to it (see the module docstring)."""
    ensure_port_free(
        host,
        port,
        "CITYHUB_MQTT_PORT",
        hint=BROKER_HINT,
    )
    amqtt.broker.StreamWriterAdapter = _ClosingStreamWriter  # what the broker wraps streams in
    # What the broker builds its protocol handlers from (they behave as amqtt's own without a
    # handoff).
    amqtt.broker.BrokerProtocolHandler = _HandoffProtocolHandler
    broker = _HandoffBroker(broker_config(host, port, gate), handoff)
    try:
        await broker.start()
    except OSError as exc:
        raise ConfigError(f"embedded MQTT broker could not listen on {host}:{port}: {exc}") from exc
    logger.info("embedded MQTT broker listening on %s:%d", host, port)
    try:
        yield broker
    finally:
        await broker.shutdown()
        # The entry's value leads back to its key (handoff → runtime → broker → plugins), so the
        # weak dictionary alone would keep every stopped broker alive.
        _HANDOFFS.pop(broker.plugins_manager, None)
