"""The MQTT side of the sensor intake: a paho-mqtt 2 client driven by the asyncio loop.

The loop owns paho's socket (`add_reader`/`add_writer` + `loop_read`/`loop_write`, a 1 s timer for
`loop_misc`), so messages are evaluated on the loop thread with no thread hop and paho never blocks
the loop; only the blocking TCP connect runs in an executor. QoS 1 messages are acknowledged by
hand (`manual_ack`): most readings at once (nothing to store), the rest once what they caused is
committed: a crash loses nothing, the broker redelivers. The session
is persistent (stable client id, MQTT 5 session expiry), so QoS 1 messages published while
ingest is down wait in the broker. Reconnects back off exponentially and re-subscribe.

This is the production path (Mosquitto). In embedded mode no client sits in between: the
in-process broker hands messages to the intake itself (services/ingest/mqtt_handoff.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from services.ingest.mqtt_handoff import HANDOFF_KEY
from services.ingest.sensors.payloads import topic_filter
from services.ingest.sensors.processor import INTAKE_KEY, SensorIntake
from shared.runtime import Runtime
from shared.settings import Settings
from shared.telemetry.metrics import MQTT_CONNECTED, MQTT_CONNECTS

logger = logging.getLogger(__name__)

KEEPALIVE_S = 30  # MQTT keep-alive; paho pings after this long without traffic
MISC_INTERVAL_S = 1.0  # how often paho's keep-alive bookkeeping runs
CONNECT_TIMEOUT_S = 10.0  # TCP connect plus CONNACK
RECONNECT_MIN_S = 0.5  # first pause after a lost or failed connection (doubles, with jitter)
RECONNECT_MAX_S = 30.0  # longest pause between attempts
STABLE_S = 30.0  # a connection that lived this long resets the back-off
SESSION_EXPIRY_S = 7 * 24 * 3600  # MQTT 5: the broker keeps our session this long while we are away
RECEIVE_MAXIMUM = 1000  # MQTT 5: unacknowledged QoS 1 messages the broker may have in flight to us
MAX_UNACKED = 2000  # stop reading beyond this many unacknowledged messages (brokers without limit)
READ_BURST = 200  # packets read per socket wake-up before other tasks get the loop
MQTT_INTAKE_KEY = "mqtt_intake"  # the running `MqttIntake` in `runtime.extras`


class Acks:
    """Acknowledgements owed to the broker, each sent once its message's writes are committed.

    They may leave in another order than the messages came (MQTT asks for arrival order; Mosquitto
    and amqtt track each packet id on its own): ordered acks would let one slow commit stall the
    whole stream. Per sensor, order is kept where it matters (see `AfterPrevious`). A lost
    connection starts a new generation: acks owed on the old one are dropped, the broker
    redelivers those messages.
    """

    def __init__(self, send: Callable[[int, int], object]) -> None:
        self._send = send
        self.generation = 0
        self.owed = 0

    def later(self) -> int:
        """Note an acknowledgement to send later; the generation to pass to `send`."""
        self.owed += 1
        return self.generation

    def send(self, generation: int, mid: int, qos: int) -> None:
        """Send an acknowledgement owed since `generation` (dropped if the connection changed)."""
        if generation != self.generation:
            return
        self.owed -= 1
        if qos:
            self._send(mid, qos)

    def reset(self) -> None:
        """The connection is gone: forget what was not acknowledged."""
        self.generation += 1
        self.owed = 0


def subscription(settings: Settings) -> str:
    """The topic filter ingest subscribes to (shared between replicas on Mosquitto)."""
    topics = topic_filter(settings.mqtt_topic_root)
    if settings.mqtt_shared_group:
        return f"$share/{settings.mqtt_shared_group}/{topics}"
    return topics


class MqttIntake:
    """Subscribes to the sensor topics and feeds the intake, reconnecting forever."""

    def __init__(
        self,
        intake: SensorIntake,
        settings: Settings,
        login: tuple[str, str] | None,
    ) -> None:
        self._intake = intake
        self._settings = settings
        self._login = login
        self._topics = subscription(settings)
        self._acks = Acks(self._send_ack)
        self._client = self._make_client()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._fd: int | None = None
        self._reading = False
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._settled = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._failure = ""
        self._stopping = False
        self.messages = 0
        self.connections = 0

    @property
    def unacked(self) -> int:
        """Messages received and not yet acknowledged."""
        return self._acks.owed

    @property
    def is_connected(self) -> bool:
        """True while connected to the broker."""
        return self._connected.is_set() and not self._lost.is_set()

    @property
    def is_subscribed(self) -> bool:
        """True once the broker confirmed the subscription on the current connection."""
        return self.is_connected and self._subscribed.is_set()

    def stop_reading(self) -> None:
        """Take no new messages (shutting down): the socket is no longer read, acknowledgements
        still go out. What is unacknowledged when the connection closes the broker keeps in
        the persistent session and delivers again."""
        self._stopping = True
        self._pause()

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._settings.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
            reconnect_on_failure=False,
        )
        if self._login is not None:
            client.username_pw_set(*self._login)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        return client

    # -- connection lifecycle -----------------------------------------------------------------

    async def run(self) -> None:
        """Connect, consume, and reconnect with back-off until cancelled."""
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        misc = asyncio.create_task(self._misc_loop(), name="mqtt-misc")
        delay = RECONNECT_MIN_S
        host, port = self._settings.mqtt_endpoint
        try:
            while True:
                started = loop.time()
                try:
                    await self._connect(host, port)
                    await self._lost.wait()
                    logger.warning("MQTT connection to %s:%d lost: %s", host, port, self._failure)
                except (OSError, TimeoutError, ConnectionError) as exc:
                    logger.warning("MQTT connection to %s:%d failed: %s", host, port, exc)
                self._gone()
                if loop.time() - started > STABLE_S:
                    delay = RECONNECT_MIN_S
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, RECONNECT_MAX_S)
        finally:
            self.stop_reading()
            misc.cancel()
            self._close()

    async def _connect(self, host: str, port: int) -> None:
        assert self._loop is not None
        self._connected.clear()
        self._lost.clear()
        self._settled.clear()
        self._failure = "no CONNACK"
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        connect = partial(
            self._client.connect,
            host,
            port,
            keepalive=KEEPALIVE_S,
            clean_start=False,
            properties=properties,
        )
        await self._loop.run_in_executor(None, connect)  # DNS and TCP connect block
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await self._settled.wait()  # CONNACK, a refusal or a lost socket
        if self._lost.is_set():
            raise ConnectionError(self._failure)

    def _gone(self) -> None:
        MQTT_CONNECTED.set(0)
        self._connected.clear()
        self._subscribed.clear()
        self._acks.reset()
        self._intake.disconnected()

    def _close(self) -> None:
        """Leave cleanly: DISCONNECT keeps the persistent session (and its queued messages)."""
        if self._client.is_connected():
            self._client.disconnect()
            with contextlib.suppress(Exception):
                self._client.loop_write()
        self._on_socket_close(self._client, None, None)
        self._intake.disconnected()

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(MISC_INTERVAL_S)
            if self._fd is not None:
                self._client.loop_misc()

    # -- paho callbacks (loop thread, except socket open/close during connect) ----------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._failure = f"broker refused the connection: {reason}"
            self._lost.set()
            self._settled.set()
            return
        self._acks.reset()
        client.subscribe(self._topics, qos=1)
        self.connections += 1
        MQTT_CONNECTS.inc()
        MQTT_CONNECTED.set(1)
        self._intake.connected()
        self._connected.set()
        self._settled.set()
        logger.info(
            "MQTT intake connected to %s:%d as %s, subscribed to %s",
            *self._settings.mqtt_endpoint,
            self._settings.mqtt_client_id,
            self._topics,
        )

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if not self._lost.is_set():
            self._failure = str(reason)
        self._gone()
        self._lost.set()
        self._settled.set()

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            logger.error("the broker refused the subscription to %s: %s", self._topics, reasons)
            return
        self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.messages += 1
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<topic is not UTF-8>"
        payload = msg.payload
        writes = self._intake.receive(
            topic, payload if isinstance(payload, bytes) else bytes(payload)
        )
        if not writes:
            if msg.qos:
                self._client.ack(msg.mid, msg.qos)
            return
        generation = self._acks.later()
        self._intake.submit(writes, partial(self._stored, generation, msg.mid, msg.qos))
        if self._acks.owed > MAX_UNACKED:
            self._pause()

    def _stored(self, generation: int, mid: int, qos: int) -> None:
        self._acks.send(generation, mid, qos)
        if not self._reading and self._acks.owed <= MAX_UNACKED // 2:
            self._resume()

    def _send_ack(self, mid: int, qos: int) -> None:
        self._client.ack(mid, qos)

    def _on_socket_open(self, _client: mqtt.Client, _userdata: object, sock: Any) -> None:
        fd = sock.fileno()
        self._in_loop(self._watch, fd)

    def _on_socket_close(self, _client: mqtt.Client, _userdata: object, _sock: Any) -> None:
        fd = self._fd
        if fd is not None:
            self._in_loop(self._unwatch, fd)

    def _on_register_write(self, _client: mqtt.Client, _userdata: object, sock: Any) -> None:
        self._in_loop(self._watch_write, sock.fileno())

    def _on_unregister_write(self, _client: mqtt.Client, _userdata: object, sock: Any) -> None:
        fd = sock.fileno()
        if fd >= 0:
            self._in_loop(self._unwatch_write, fd)

    # -- socket plumbing (loop thread) --------------------------------------------------------

    def _in_loop(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            callback(*args)
        else:
            self._loop.call_soon_threadsafe(callback, *args)

    def _watch(self, fd: int) -> None:
        assert self._loop is not None
        self._fd = fd
        if not self._stopping:
            self._loop.add_reader(fd, self._read)
            self._reading = True

    def _unwatch(self, fd: int) -> None:
        assert self._loop is not None
        if self._fd == fd:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
            self._fd = None
            self._reading = False

    def _watch_write(self, fd: int) -> None:
        assert self._loop is not None
        if self._fd == fd:
            self._loop.add_writer(fd, self._write)

    def _unwatch_write(self, fd: int) -> None:
        assert self._loop is not None
        if self._fd == fd:
            self._loop.remove_writer(fd)

    def _pause(self) -> None:
        if self._reading and self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _resume(self) -> None:
        if (
            not self._reading
            and not self._stopping
            and self._fd is not None
            and self._loop is not None
        ):
            self._loop.add_reader(self._fd, self._read)
            self._reading = True

    def _read(self) -> None:
        client = self._client
        for _ in range(READ_BURST):
            before = self.messages
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break  # connection lost: paho closed the socket and called on_disconnect
            if self.messages == before or not self._reading:
                break  # nothing more to read now (or a control packet), or paused

    def _write(self) -> None:
        self._client.loop_write()


async def mqtt_worker(runtime: Runtime) -> None:
    """Ingest's worker consuming sensor messages from the broker."""
    intake: SensorIntake = runtime.extras[INTAKE_KEY]
    if HANDOFF_KEY in runtime.extras:
        return  # the embedded broker runs in this process and hands messages over itself
    settings = runtime.settings
    if settings.mqtt_url is None:
        logger.warning("MQTT intake is off: no broker here and CITYHUB_MQTT_URL is not set")
        return
    login: tuple[str, str] | None = None
    if settings.mqtt_username:
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else ""
        login = (settings.mqtt_username, password)
    consumer = MqttIntake(intake, settings, login)
    runtime.extras[MQTT_INTAKE_KEY] = consumer
    await consumer.run()
