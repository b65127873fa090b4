"""MQTT clients for tests: paho with its own network thread, awaited from async tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

TIMEOUT_S = 10.0


class Publisher:
    """A connected MQTT client; `publish` returns once the broker acknowledged (QoS 1)."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client

    async def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        """Publish and wait for the broker's PUBACK."""
        info = self.client.publish(topic, payload, qos=qos)
        await asyncio.to_thread(info.wait_for_publish, TIMEOUT_S)
        assert info.is_published(), f"no PUBACK for {topic}"

    def drop(self) -> None:
        """Lose the connection without DISCONNECT, so the broker publishes the last will."""
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)


def _connect(
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    will: tuple[str, bytes] | None,
) -> tuple[mqtt.Client, ReasonCode | None]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}")
    if username is not None:
        client.username_pw_set(username, password)
    if will is not None:
        client.will_set(will[0], will[1], qos=1)
    answered = threading.Event()
    reason: list[ReasonCode] = []

    def on_connect(*args: object) -> None:
        reason.append(args[3])  # type: ignore[arg-type]  # (client, userdata, flags, reason, props)
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *_args: answered.set()
    client.connect(host, port, keepalive=30)
    client.loop_start()
    answered.wait(TIMEOUT_S)
    return client, reason[0] if reason else None


async def connack(
    host: str, port: int, username: str | None = None, password: str | None = None
) -> ReasonCode | None:
    """The broker's answer to a login (None: it closed the connection without one)."""
    client, reason = await asyncio.to_thread(_connect, host, port, username, password, None)
    client.disconnect()
    client.loop_stop()
    return reason


@asynccontextmanager
async def publisher(
    host: str,
    port: int,
    username: str | None = None,
    password: str | None = None,
    will: tuple[str, bytes] | None = None,
) -> AsyncIterator[Publisher]:
    """A client logged in (or anonymous) for the duration of the block."""
    client, reason = await asyncio.to_thread(_connect, host, port, username, password, will)
    try:
        assert reason is not None and not reason.is_failure, f"login refused: {reason}"
        yield Publisher(client)
    finally:
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)


def clear_session(host: str, port: int, client_id: str) -> None:
    """Remove a persistent session a test left in a shared broker."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    done = threading.Event()
    client.on_connect = lambda *_args: done.set()
    client.connect(host, port)
    client.loop_start()
    done.wait(TIMEOUT_S)
    client.disconnect()
    client.loop_stop()
