"""The embedded broker: the gate decides who connects, publishes and subscribes; with a handoff,
a message is acknowledged only once the handoff took it; clients leaving while it shuts down leave
no socket behind (amqtt 0.12.1 could skip closing them)."""

from __future__ import annotations

import asyncio
import gc
import struct

from shared.mqtt_broker import embedded_broker
from tests.support.mqtt import connack, publisher
from tests.support.servers import free_port
from tests.support.waiting import wait_for


class Gate:
    """Lets `good` in with password `pw`; publishing only under `open/`."""

    async def authenticate(self, username: str | None, password: str | None) -> bool:
        return (username, password) == ("good", "pw")

    def may_publish(self, username: str | None, topic: str) -> bool:
        return topic.startswith("open/")

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool:
        return False


class Holding:
    """A handoff that records what it is handed and holds `open/held` until released."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str | None, str, bytes]] = []
        self.release = asyncio.Event()

    async def deliver(self, username: str | None, topic: str, payload: bytes) -> None:
        self.delivered.append((username, topic, payload))
        if topic == "open/held":
            await self.release.wait()  # as a commit that takes its time

    def topics(self) -> list[str]:
        return [topic for _user, topic, _payload in self.delivered]


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


async def test_with_a_handoff_a_message_is_acknowledged_only_once_handed_over() -> None:
    port, handoff = free_port(), Holding()
    async with (
        embedded_broker("127.0.0.1", port, Gate(), handoff),
        publisher("127.0.0.1", port, "good", "pw") as pub,
    ):
        held = pub.client.publish("open/held", b"1", qos=1)

        async def handed_over() -> bool:
            return "open/held" in handoff.topics()

        await wait_for(handed_over)
        await pub.publish("open/next", b"2")  # a later message: taken and acknowledged...
        assert not held.is_published()  # ...while the held one still waits for its PUBACK
        handoff.release.set()
        await asyncio.to_thread(held.wait_for_publish, 10)
        assert held.is_published()

        await pub.publish("open/exactly-once", b"3", qos=2)  # PUBCOMP after the handoff
        await pub.publish("open/at-most-once", b"4", qos=0)

        async def fire_and_forget() -> bool:
            return "open/at-most-once" in handoff.topics()

        await wait_for(fire_and_forget)
    assert handoff.delivered == [
        ("good", "open/held", b"1"),
        ("good", "open/next", b"2"),
        ("good", "open/exactly-once", b"3"),
        ("good", "open/at-most-once", b"4"),
    ]


async def test_with_a_handoff_a_last_will_is_handed_over() -> None:
    port, handoff = free_port(), Holding()
    will = ("open/will", b"gone")
    async with (
        embedded_broker("127.0.0.1", port, Gate(), handoff),
        publisher("127.0.0.1", port, "good", "pw", will=will) as pub,
    ):
        pub.drop()  # no DISCONNECT: the broker publishes the will

        async def willed() -> bool:
            return ("good", *will) in handoff.delivered

        await wait_for(willed)
