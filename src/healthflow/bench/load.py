"""Offered telemetry load: HTTP batches and MQTT messages, closed loop (max) or at a fixed rate.

Closed loop (`rate=None`): a fixed number of senders post back to back; a pushed-back request
(503/429) is counted and its sender pauses briefly before going on, so the offered load follows
what the server takes. Fixed rate: requests are started on a schedule whatever the answers were,
with a bound on requests in flight; when that bound is reached the schedule slips, and the
shortfall is reported as `not_offered`.

A device never has two requests in flight, so its readings arrive in order, as a real monitor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from healthflow.bench.fleet import Device, Fleet
from healthflow.bench.keepalive import ConnectionClosed, KeepAlivePool
from healthflow.bench.stats import percentiles

# aiomqtt warns about publishes still pending at disconnect; ours have all been awaited by then
QUIET = logging.getLogger("healthflow.bench.mqtt")
QUIET.setLevel(logging.ERROR)
# a pushed-back sender in closed loop waits this long, not the whole Retry-After: the point of
# `max` is to find what the pipeline sustains, and a 5 s pause would hide it
CLOSED_LOOP_BACKOFF_S = 0.05


@dataclass
class Tally:
    """What the load generator saw: readings offered and what the server answered."""

    requests: int = 0
    readings_sent: int = 0
    readings_accepted: int = 0
    duplicates: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    pushed_back: int = 0  # 429 / 503 answers
    pushed_back_with_retry_after: int = 0
    retry_after_values: Counter[str] = field(default_factory=Counter)
    transport_errors: int = 0
    errors: list[str] = field(default_factory=list)
    not_offered: int = 0  # batches the schedule could not start (in-flight bound reached)
    accepted_at: dict[tuple[str, int], float] = field(default_factory=dict)
    # (patient, ts) → the ts of the first reading of the request it came in
    batch_of: dict[tuple[str, int], int] = field(default_factory=dict)
    sent_at: dict[tuple[str, int], float] = field(default_factory=dict)  # by (patient, first ts)
    request_ms: list[float] = field(default_factory=list)  # POST sent → 202 read
    in_flight_readings: int = 0

    def note_error(self, text: str) -> None:
        if len(self.errors) < 10:
            self.errors.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "readings_sent": self.readings_sent,
            "readings_accepted": self.readings_accepted,
            "duplicates": self.duplicates,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "pushed_back": self.pushed_back,
            "pushed_back_with_retry_after": self.pushed_back_with_retry_after,
            "retry_after_values": dict(self.retry_after_values),
            "transport_errors": self.transport_errors,
            "not_offered_batches": self.not_offered,
            "request_ms": percentiles(self.request_ms),
            "errors": self.errors,
        }


class DevicePicker:
    """Round robin over the devices, skipping any with a request in flight."""

    def __init__(self, devices: list[Device]) -> None:
        self._devices = devices
        self._next = 0

    def take(self) -> Device | None:
        for _ in range(len(self._devices)):
            device = self._devices[self._next % len(self._devices)]
            self._next += 1
            if not device.busy:
                device.busy = True
                return device
        return None


@dataclass
class HttpLoad:
    """Telemetry over `POST /api/devices/{id}/telemetry`, `batch` readings per request."""

    http: KeepAlivePool  # lean keep-alive connections: httpx would load the generator itself
    fleet: Fleet
    batch: int
    record_latency: bool = False  # keep (patient, ts) → accepted-at for the latency phase
    # readings are stamped this far in the past (a monitor's buffer): room for a fast device's
    # clock to run ahead of the wall clock without reaching the 5-minute future limit
    lag_ms: int = 0
    step_ms: int = 1  # time between two readings of one batch
    tally: Tally = field(default_factory=Tally)

    async def post(self, device: Device) -> int:
        body, stamps = self.fleet.batch(
            device, self.batch, newest_ms=_now_ms() - self.lag_ms, step_ms=self.step_ms
        )
        self.tally.requests += 1
        self.tally.readings_sent += len(stamps)
        self.tally.in_flight_readings += len(stamps)
        sent = time.monotonic()  # the WebSocket client processes note arrivals on this clock
        try:
            response = await self.http.post_json(
                f"/api/devices/{device.device_id}/telemetry",
                body,
                headers={"X-Device-Key": device.key},
            )
        except (ConnectionClosed, OSError) as exc:
            self.tally.transport_errors += 1
            self.tally.note_error(f"{type(exc).__name__}: {exc}")
            return 0
        finally:
            device.busy = False
            self.tally.in_flight_readings -= len(stamps)
        at = time.monotonic()
        status = response.status
        self.tally.statuses[status] += 1
        if status == 202:
            answer = orjson.loads(response.body)
            self.tally.readings_accepted += int(answer["accepted"])
            self.tally.duplicates += int(answer["duplicates"])
            self.tally.request_ms.append((at - sent) * 1000)
            if self.record_latency:
                self.tally.sent_at[(device.patient_id, stamps[0])] = sent
                for ts in stamps:
                    self.tally.accepted_at[(device.patient_id, ts)] = at
                    self.tally.batch_of[(device.patient_id, ts)] = stamps[0]
        elif status in (429, 503):
            self.tally.pushed_back += 1
            retry_after = response.headers.get("retry-after")
            if retry_after is not None:
                self.tally.pushed_back_with_retry_after += 1
                self.tally.retry_after_values[retry_after] += 1
        else:
            self.tally.note_error(f"HTTP {status}: {response.body[:200].decode(errors='replace')}")
        return status

    async def closed_loop(
        self,
        *,
        duration_s: float,
        senders: int,
        window: int,
        processed: Callable[[], float],
    ) -> float:
        """Post back to back on `senders` tasks for `duration_s`, keeping at most `window`
        readings accepted or in flight but not yet processed; returns the load's length.

        The window stays under the server's backlog limit, so the load follows what the
        pipeline processes instead of bouncing off the intake's 503s (each refused request
        still costs the server its parsing), which would measure the refusals.
        """
        picker = DevicePicker(self.fleet.devices)
        started = time.perf_counter()
        deadline = started + duration_s
        tally = self.tally

        async def sender() -> None:
            while time.perf_counter() < deadline:
                owed = tally.readings_accepted + tally.in_flight_readings - processed()
                if owed + self.batch > window:
                    await asyncio.sleep(0.002)
                    continue
                device = picker.take()
                if device is None:
                    await asyncio.sleep(0.001)
                    continue
                status = await self.post(device)
                if status in (429, 503) or status == 0:
                    await asyncio.sleep(CLOSED_LOOP_BACKOFF_S)

        await asyncio.gather(*(sender() for _ in range(senders)))
        return time.perf_counter() - started

    async def at_rate(
        self,
        *,
        readings_per_s: float,
        duration_s: float,
        max_in_flight: int,
    ) -> float:
        """Start one request every batch/rate seconds for `duration_s`, whatever the answers."""
        picker = DevicePicker(self.fleet.devices)
        interval = self.batch / readings_per_s
        slots = asyncio.Semaphore(max_in_flight)
        tasks: set[asyncio.Task[int]] = set()
        started = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) < started + duration_s:
            due = int((now - started) / interval) + 1
            while n < due:
                n += 1
                device = picker.take()
                if device is None or slots.locked():
                    if device is not None:
                        device.busy = False
                    self.tally.not_offered += 1
                    continue
                await slots.acquire()
                task = asyncio.create_task(self._post_released(device, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(min(interval, 0.005))
        elapsed = time.perf_counter() - started
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return elapsed

    async def _post_released(self, device: Device, slots: asyncio.Semaphore) -> int:
        try:
            return await self.post(device)
        finally:
            slots.release()


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class MqttLoad:
    """Telemetry over MQTT at QoS 1: a PUBACK from the broker is the device's acceptance.

    Devices share a few connections (as behind a bedside gateway), each publishing on its own
    device topic. In closed loop the sender keeps at most `window` readings sent but not yet
    processed by the server (read from `/metrics`): Mosquitto holds at most
    `max_queued_messages` (1,000 by default) for a subscriber that is behind and drops the rest
    without telling the publisher, so an unbounded publisher would measure the broker's queue
    limit, not the pipeline.
    """

    fleet: Fleet
    broker_url: str
    topic_prefix: str
    batch: int
    connections: int = 4
    lag_ms: int = 0
    tally: Tally = field(default_factory=Tally)

    async def run(
        self,
        *,
        duration_s: float,
        readings_per_s: float | None,
        window: int,
        processed: Callable[[], float],
    ) -> float:
        import aiomqtt

        from healthflow.vitals.ingest_mqtt import Broker

        broker = Broker.from_url(self.broker_url)
        async with contextlib.AsyncExitStack() as stack:
            clients = []
            for c in range(self.connections):
                client = aiomqtt.Client(
                    broker.hostname,
                    broker.port,
                    logger=QUIET,
                    identifier=f"{self.topic_prefix.strip('/')}-load-{c}",
                    max_inflight_messages=1000,
                    max_queued_outgoing_messages=0,
                    clean_session=True,
                )
                clients.append(await stack.enter_async_context(client))
            started = time.perf_counter()
            deadline = started + duration_s
            picker = DevicePicker(self.fleet.devices)
            per_connection = None if readings_per_s is None else readings_per_s / len(clients)

            async def publisher(client: aiomqtt.Client) -> None:
                in_flight: set[asyncio.Task[None]] = set()
                sent = 0
                began = time.perf_counter()
                while time.perf_counter() < deadline:
                    if per_connection is not None:
                        due = (time.perf_counter() - began) * per_connection
                        if sent >= due:
                            await asyncio.sleep(0.002)
                            continue
                    elif self.tally.readings_sent - processed() + self.batch > window:
                        await asyncio.sleep(0.002)
                        continue
                    device = picker.take()
                    if device is None:
                        await asyncio.sleep(0.001)
                        continue
                    sent += self.batch
                    # counted as sent before the task runs: the window check above must see
                    # every publish already started, or several connections overshoot it
                    self.tally.requests += 1
                    self.tally.readings_sent += self.batch
                    task = asyncio.create_task(self._publish(client, device))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    if len(in_flight) % 64 == 0:
                        await asyncio.sleep(0)
                if in_flight:
                    await asyncio.gather(*in_flight, return_exceptions=True)

            await asyncio.gather(*(publisher(c) for c in clients))
            return time.perf_counter() - started

    async def _publish(self, client: Any, device: Device) -> None:
        import aiomqtt

        body, stamps = self.fleet.batch(
            device, self.batch, newest_ms=_now_ms() - self.lag_ms, key=True
        )
        topic = f"{self.topic_prefix}devices/{device.device_id}/messages/events/"
        try:
            await client.publish(topic, body, qos=1)
        except aiomqtt.MqttError as exc:
            self.tally.transport_errors += 1
            self.tally.note_error(f"{type(exc).__name__}: {exc}")
            return
        finally:
            device.busy = False
        self.tally.readings_accepted += len(stamps)
