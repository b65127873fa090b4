"""The embedded broker: the gate decides who connects, publishes and subscribes; clients leaving
while it shuts down leave no socket behind (amqtt 0.12.1 could skip closing them)."""

from __future__ import annotations

import asyncio
import gc
import struct

from shared.mqtt_broker import embedded_broker
from tests.support.mqtt import connack, publisher
from tests.support.servers import free_port


class Gate:
    """Lets `good` in with password `pw`; publishing only under `open/`."""

    async def authenticate(self, username: str | None, password: str | None) -> bool:
        return (username, password) == ("good", "pw")

    def may_publish(self, username: str | None, topic: str) -> bool:
        return topic.startswith("open/")

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool:
        return False


def _connect_packet(client_id: bytes) -> bytes:
    """A minimal MQTT 3.1.1 CONNECT with username `good` and password `pw`."""
    body = (
        b"\x00\x04MQTT\x04\xc2\x00\x1e"  # protocol, level 4, flags: username + password + clean
        + struct.pack("!H", len(client_id))
        + client_id
        + b"\x00\x04good\x00\x02pw"
    )
    return bytes([0x10, len(body)]) + body


async def test_gate_decides_who_connects() -> None:
    port = free_port()
    async with embedded_broker("127.0.0.1", port, Gate()):
        anonymous = await connack("127.0.0.1", port)
        assert anonymous is None or anonymous.is_failure
        refused = await connack("127.0.0.1", port, "good", "bad")
        assert refused is None or refused.is_failure
        async with publisher("127.0.0.1", port, "good", "pw") as pub:
            await pub.publish("open/x", "allowed")
            await pub.publish("closed/x", "dropped by the broker, still acknowledged")


async def test_shutting_down_while_clients_leave_closes_their_sockets() -> None:
    for _ in range(5):
        port = free_port()
        async with embedded_broker("127.0.0.1", port, Gate()):
            clients = []
            for i in range(10):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(_connect_packet(f"leaving-{i}".encode()))
                assert (await reader.readexactly(4))[:1] == b"\x20"  # CONNACK
                clients.append(writer)
            for writer in clients:
                writer.write(b"\xe0\x00")  # DISCONNECT; the broker shuts down right away
                writer.close()
        for writer in clients:
            await writer.wait_closed()
    gc.collect()  # an unclosed transport would now raise a ResourceWarning (warnings are errors)
