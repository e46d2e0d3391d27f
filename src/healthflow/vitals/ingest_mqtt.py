"""MQTT intake: device-to-cloud messages on IoT Hub's topic `devices/{device_id}/messages/events/`.

Devices publish JSON at QoS 1: the same body as the HTTP intake (one reading or
`{"readings": [...]}`) plus `"device_key"`, their own key. The broker (Mosquitto) authenticates
MQTT connections itself and never tells a subscriber who published, so this subscriber checks
the key carried in each message, as the HTTP intake checks `X-Device-Key` (docs/telemetry.md).

The subscriber hands each message to a DeviceMessages port: the intake itself in `--role all`,
or, in the worker role, the patients service's HTTP intake (vitals/clients.py), which owns the
devices and the telemetry outbox. A message is acknowledged (PUBACK) only after its readings are
stored or quarantined, so a crash in between, or an intake that cannot be reached, makes the
broker keep or deliver it again to the persistent session; the (device, ts) dedupe absorbs the
repeat. aiomqtt acknowledges on receipt and has no public switch for that,
so the paho client underneath is put in manual-ack mode.

aiomqtt discards what arrives beyond its queue, and a discarded QoS 1 message is never
acknowledged: the broker counts it in flight until the next reconnect, and once its window is full
of them the session stalls, those readings unstored. `_SubscriberClient` never discards a
message; it stops reading its socket while its queue is full instead.

aiomqtt also ignores a connection the broker closes before its CONNACK (a broker restarting
behind a load balancer, a proxy whose upstream is down): the connect then waits out the whole
client timeout (10 s) before the reconnect loop may try again. `_SubscriberClient` fails such
a connect at once instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson
import structlog
from fastapi.exceptions import RequestValidationError
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.client import DisconnectFlags
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from healthflow.ports import Check
from healthflow.vitals import metrics
from healthflow.vitals.domain import (
    Device,
    DeviceAuthFailed,
    DeviceUnbound,
    Reading,
    ReadingsRefused,
    TelemetryBusy,
)
from healthflow.vitals.ports import DeviceMessage, DeviceMessages, MessageRefused
from healthflow.vitals.schemas import parse_readings
from healthflow.vitals.service import TelemetryService

log = structlog.get_logger(__name__)
TOPIC = "devices/+/messages/events/#"
TRANSPORT = "mqtt"


@dataclass(frozen=True)
class Broker:
    hostname: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> Broker:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, not {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(
            hostname=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


def device_of(topic: str, prefix: str) -> str | None:
    """The device id in `{prefix}devices/{id}/messages/events/...`, or None for other topics."""
    if not topic.startswith(prefix):
        return None
    levels = topic[len(prefix) :].split("/")
    if len(levels) >= 4 and levels[0] == "devices" and levels[2:4] == ["messages", "events"]:
        return levels[1] or None
    return None


class LocalIntake:
    """DeviceMessages in the process that holds the intake (`--role all`, the patients service).

    The messages are checked, parsed and stored together: one device read, one backlog check and
    one commit for what the subscriber took from the broker, not one of each per message.
    """

    def __init__(self, telemetry: TelemetryService) -> None:
        self._telemetry = telemetry

    async def submit_many(self, messages: Sequence[DeviceMessage]) -> list[Exception | None]:
        # a busy intake refuses the batch before its devices are read: the broker keeps it
        await self._telemetry.admit(transport=TRANSPORT)
        outcomes: list[Exception | None] = [None] * len(messages)
        devices = await self._telemetry.authenticate_many(
            [(m.device_id, m.key) for m in messages], transport=TRANSPORT
        )
        requests: list[tuple[Device, list[Reading]]] = []
        indexes: list[int] = []
        for index, (message, device) in enumerate(zip(messages, devices, strict=True)):
            if isinstance(device, DeviceAuthFailed):
                outcomes[index] = device
                continue
            try:
                readings = parse_readings(message.body)
            except RequestValidationError as exc:
                outcomes[index] = exc
                continue
            requests.append((device, readings))
            indexes.append(index)
        if requests:
            stored = await self._telemetry.ingest_many(requests, transport=TRANSPORT)
            for index, outcome in zip(indexes, stored, strict=True):
                outcomes[index] = outcome if isinstance(outcome, Exception) else None
        return outcomes


class MqttIngest:
    """A subscriber that reconnects with capped, jittered exponential backoff until stopped."""

    def __init__(
        self,
        messages: DeviceMessages,
        broker: Broker,
        *,
        client_id: str,
        topic_prefix: str = "",
        max_message_bytes: int,
        queue_size: int,
        reconnect_max_s: float = 30.0,
        max_batch: int = 500,
    ) -> None:
        self._messages = messages
        self._broker = broker
        self._client_id = client_id
        self._prefix = topic_prefix
        self._max_bytes = max_message_bytes
        self._queue_size = queue_size
        self._reconnect_max = reconnect_max_s
        self._max_batch = max_batch
        self._failures = 0
        self.subscribed = asyncio.Event()
        # the most messages held unacknowledged at once (queued, or in the batch being stored)
        self.most_waiting = 0

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                self.subscribed.clear()
                self._failures += 1
                metrics.MQTT_RECONNECTS.inc()
                delay = random.uniform(
                    0, min(self._reconnect_max, 0.5 * 2 ** min(self._failures, 10))
                )
                log.warning("mqtt_disconnected", error=str(exc), retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)

    async def check(self) -> Check:
        """Readiness detail: subscribed to the broker or not (reconnecting)."""
        return Check(
            self.subscribed.is_set(),
            {
                "broker": f"{self._broker.hostname}:{self._broker.port}",
                "reconnects": self._failures,
                "most_unacknowledged": self.most_waiting,
            },
        )

    async def _session(self) -> None:
        client = _SubscriberClient(
            self._broker.hostname,
            self._broker.port,
            username=self._broker.username,
            password=self._broker.password,
            identifier=self._client_id,
            clean_session=False,  # the broker keeps unacknowledged messages while we are away
            tls_context=ssl.create_default_context() if self._broker.tls else None,
            limit=self._queue_size,
        )
        # aiomqtt has no public manual-ack switch; PUBACK must wait until the reading is stored
        client._client.manual_ack_set(True)
        async with client:
            # a persistent session's backlog arrives before the SUBACK: taken meanwhile, or a
            # backlog larger than the queue pauses the socket and the SUBACK is never read
            consuming = asyncio.create_task(self._consume(client))
            try:
                await client.subscribe(self._prefix + TOPIC, qos=1)
                self._failures = 0
                self.subscribed.set()
                log.info(
                    "mqtt_subscribed", topic=self._prefix + TOPIC, broker=self._broker.hostname
                )
                await consuming
            finally:
                consuming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consuming

    async def _consume(self, client: _SubscriberClient) -> None:
        async for message in client.messages:
            # what has arrived meanwhile is stored together (the intake commits concurrent
            # messages as one transaction), then acknowledged in arrival order, as MQTT wants
            batch = [message, *client.take_waiting(self._max_batch - 1)]
            self.most_waiting = max(self.most_waiting, len(batch) + len(client.messages))
            client.read_on()  # what waited is taken: let more in while this batch is stored
            metrics.MQTT_BATCH.observe(len(batch))
            await self._store_all(batch)
            for stored in batch:
                if stored.qos > 0:
                    client._client.ack(stored.mid, stored.qos)

    async def _store_all(self, batch: list[aiomqtt.Message]) -> None:
        """Store the batch's usable messages together, in arrival order, until stored."""
        topics: list[str] = []
        messages: list[DeviceMessage] = []
        for received in batch:
            topic = str(received.topic)
            if (message := self._parse(topic, _payload(received.payload))) is not None:
                topics.append(topic)
                messages.append(message)
        if not messages:
            return
        outcomes = await self._submit_until_stored(messages)
        for topic, message, outcome in zip(topics, messages, outcomes, strict=True):
            if outcome is not None:
                self._report(topic, message.device_id, outcome)

    def _parse(self, topic: str, payload: bytes) -> DeviceMessage | None:
        """The message a device sent, or None (refused, counted and logged)."""
        device_id = device_of(topic, self._prefix)
        if device_id is None:
            self._refuse("bad_topic", topic)
            return None
        if len(payload) > self._max_bytes:
            self._refuse("too_large", topic, size=len(payload))
            return None
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._refuse("malformed", topic)
            return None
        if not isinstance(body, dict):
            self._refuse("malformed", topic)
            return None
        key = body.pop("device_key", None)
        return DeviceMessage(device_id, key if isinstance(key, str) else None, body)

    async def _submit_until_stored(self, messages: list[DeviceMessage]) -> list[Exception | None]:
        attempt = 0
        while True:
            try:
                return await self._messages.submit_many(messages)
            except TelemetryBusy as exc:
                # unacknowledged messages are the broker's backpressure: wait, then try again
                await asyncio.sleep(exc.retry_after_s)
            except (aiomqtt.MqttError, asyncio.CancelledError):
                raise
            except Exception:
                attempt += 1
                metrics.MQTT_STORE_FAILURES.inc()
                log.exception("mqtt_store_failed", messages=len(messages), attempt=attempt)
                await asyncio.sleep(min(self._reconnect_max, 0.1 * 2 ** min(attempt, 8)))

    def _report(self, topic: str, device_id: str, refusal: Exception) -> None:
        """A message refused for good: counted where it was decided, logged here."""
        if isinstance(refusal, DeviceAuthFailed):
            log.warning("mqtt_refused", reason="auth_failed", topic=topic)
        elif isinstance(refusal, RequestValidationError):
            self._refuse("invalid", topic, errors=str(refusal.errors())[:500])
        elif isinstance(refusal, DeviceUnbound | ReadingsRefused) or (
            isinstance(refusal, MessageRefused) and refusal.reason == "quarantined"
        ):
            log.info("mqtt_readings_quarantined", device_id=device_id, detail=str(refusal)[:500])
        elif isinstance(refusal, MessageRefused):  # the intake in another process said why
            self._refuse(refusal.reason, topic, detail=str(refusal)[:500])
        else:
            log.warning("mqtt_refused", reason=type(refusal).__name__, topic=topic)

    def _refuse(self, reason: str, topic: str, **detail: object) -> None:
        metrics.REFUSED.labels(TRANSPORT, reason).inc()
        log.warning("mqtt_refused", reason=reason, topic=topic, **detail)


def _payload(raw: object) -> bytes:
    if isinstance(raw, bytes | bytearray):
        return bytes(raw)
    return str(raw).encode() if raw is not None else b""


READ_AHEAD = 65536


class _ReadAhead:
    """The broker's socket as paho reads it: one `recv` of up to 64 KiB, handed out in the
    pieces paho asks for. paho reads a packet's fixed header a byte at a time, three or four
    `recv` calls a message; `pending` tells the subscriber what is read but not yet taken, as
    an SSL socket's does (paho's own loop and aiomqtt's reader already ask it). Everything else
    is the socket's."""

    __slots__ = ("_data", "_pos", "_sock")

    def __init__(self, sock: socket.socket) -> None:  # an ssl.SSLSocket with TLS
        self._sock = sock
        self._data = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        data, pos = self._data, self._pos
        if pos >= len(data):
            data = self._sock.recv(max(size, READ_AHEAD))  # BlockingIOError when there is none
            if len(data) <= size:  # b"" too: the broker closed the connection
                return data
            self._data, pos = data, 0
        end = min(pos + size, len(data))
        self._pos = end
        return data[pos:end]

    def pending(self) -> int:
        decoded = self._sock.pending() if isinstance(self._sock, ssl.SSLSocket) else 0
        return len(self._data) - self._pos + decoded

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _SubscriberClient(aiomqtt.Client):
    """aiomqtt's client that never discards a message it was handed, stops reading its socket
    while `limit` messages wait to be taken (TCP then holds the rest back at the broker), and
    fails a connection the broker closes before CONNACK at once.

    It also reads the socket ahead (`_ReadAhead`) and takes every whole packet read in one
    wake-up of the event loop, and hands over the messages waiting without a task each:
    aiomqtt's reader takes one packet a wake-up and its message iterator makes a task and an
    `asyncio.wait` per message, together about half of what a message cost the subscriber
    (benchmarks/mqtt_transport.py, BENCHMARKS.md).

    aiomqtt reads whatever arrives and discards what its queue has no room for; a discarded
    QoS 1 message is never acknowledged and stalls the session. Receive Maximum (MQTT 5) or the
    broker's in-flight window would bound what arrives, but this machine's Mosquitto keeps to
    either only for the first window (docs/telemetry.md), so the bound is taken here instead.
    """

    def __init__(self, *args: Any, limit: int, **kwargs: Any) -> None:
        super().__init__(*args, max_queued_incoming_messages=0, **kwargs)
        self._limit = limit
        self._fd = -1
        self._paused = False

    def _on_socket_open(self, client: PahoClient, userdata: Any, sock: Any) -> None:
        # called inside paho's connect, before it sends CONNECT: nothing has been read yet
        client._sock = _ReadAhead(sock)
        super()._on_socket_open(client, userdata, sock)
        # scheduled after aiomqtt's own reader, so ours replaces it on the descriptor
        self._loop.call_soon_threadsafe(self._read_from, sock.fileno())

    def _on_socket_close(self, client: PahoClient, userdata: Any, sock: Any) -> None:
        self._fd = -1
        super()._on_socket_close(client, userdata, sock)

    def _read_from(self, fd: int) -> None:
        self._fd, self._paused = fd, False
        self._loop.add_reader(fd, self._read)

    def _read(self) -> None:
        """Every whole packet read so far (paho takes one a call), until the queue is full."""
        try:
            while True:
                self._client.loop_read()
                if self._queue.qsize() >= self._limit:
                    if self._fd >= 0:
                        self._loop.remove_reader(self._fd)
                        self._paused = True
                    return
                if self._unread() <= 0:
                    return
        except Exception as exc:  # a broken connection: the session ends and reconnects
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)

    def _unread(self) -> int:
        sock = self._client._sock
        return sock.pending() if isinstance(sock, _ReadAhead) else 0

    def read_on(self) -> None:
        """Read again if paused and the queue has room (a batch was taken): the socket, and
        what was read ahead before the pause, which the socket will not signal again."""
        if self._paused and self._fd >= 0 and self._queue.qsize() < self._limit:
            self._read_from(self._fd)
            if self._unread() > 0:
                self._loop.call_soon(self._read)

    def take_waiting(self, most: int) -> list[aiomqtt.Message]:
        """Up to `most` messages that have arrived, without waiting for more."""
        taken: list[aiomqtt.Message] = []
        while len(taken) < most and not self._queue.empty():
            taken.append(self._queue.get_nowait())
        return taken

    def _on_disconnect(
        self,
        client: PahoClient,
        userdata: Any,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        if not self._connected.done():
            self._connected.set_exception(
                aiomqtt.MqttCodeError(reason_code, "Connection closed before CONNACK")
            )
            return
        super()._on_disconnect(client, userdata, flags, reason_code, properties)
