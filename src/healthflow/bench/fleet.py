"""The bench's bedside monitors: patients and devices registered through the public API, and
readings encoded ahead so the load generator spends its CPU on sending, not on building JSON.

Each device keeps its own clock of reading timestamps (strictly increasing, whole milliseconds),
so every reading is new to the server and none is scored as late; (patient, ts) is the key that
ties a VitalsUpdated or AlertRaised received on a WebSocket back to the moment its reading was
accepted.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from healthflow.vitals.simulator import VitalsGenerator

WARD_PREFIX = "BENCH-"
PATIENT_BODY = {
    "given_name": "Bench",
    "family_name": "Mark",
    "birth_date": "1970-01-01",
    "sex": "unknown",
    "ward": "BENCH",
}
# distinct healthy readings per template pool; cycled, so the pool's size only sets variety
TEMPLATES = 512


def ward(i: int, wards: int) -> str:
    return f"{WARD_PREFIX}{i % wards}"


def iso_ms(ts_ms: int) -> bytes:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").encode()


def ts_key(iso: str) -> int:
    """Milliseconds since the epoch of an ISO timestamp, as the server echoes it back."""
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


@dataclass
class Device:
    """One registered monitor and its reading clock."""

    index: int
    device_id: str
    patient_id: str
    key: str
    ward: str
    deteriorates: bool = False
    last_ts_ms: int = 0
    busy: bool = False
    vitals: VitalsGenerator | None = None

    def next_ts(self, wanted_ms: int) -> int:
        self.last_ts_ms = max(self.last_ts_ms + 1, wanted_ms)
        return self.last_ts_ms


@dataclass
class Fleet:
    """Registered devices and the encoded value parts their readings are made of."""

    devices: list[Device]
    healthy: list[bytes]
    started_wall: float = field(default_factory=time.time)
    _cursor: int = 0

    def deteriorate(
        self, count: int, *, ramp_s: float, first: int = 0, seed: int = 2
    ) -> list[Device]:
        """From now on, `count` patients from `first` on slide into a high NEWS2 over `ramp_s`."""
        rng = random.Random(seed + first)
        self.started_wall = time.time()
        chosen = self.devices[first : first + count]
        for device in chosen:
            device.deteriorates = True
            device.vitals = VitalsGenerator(
                random.Random(rng.getrandbits(64)), deteriorates=True, onset_s=0, ramp_s=ramp_s
            )
        return chosen

    def batch(
        self, device: Device, count: int, *, newest_ms: int, step_ms: int = 1, key: bool = False
    ) -> tuple[bytes, list[int]]:
        """A telemetry body of `count` readings ending near `newest_ms`, and their timestamps.

        Deteriorating devices (phase `latency`) draw from their own generator so they raise
        alerts; the rest reuse the healthy pool. `key` adds the device key (MQTT carries it).
        """
        stamps = [device.next_ts(newest_ms - (count - 1 - i) * step_ms) for i in range(count)]
        parts = []
        for ts in stamps:
            if device.deteriorates and device.vitals is not None:
                values = device.vitals.reading(time.time() - self.started_wall, datetime.now(UTC))
                values.pop("ts")
                fragment = orjson.dumps(values)[1:]
            else:
                fragment = self.healthy[self._cursor % len(self.healthy)]
                self._cursor += 1
            parts.append(b'{"ts":"' + iso_ms(ts) + b'",' + fragment)
        if count == 1:
            if key:
                return b'{"device_key":"' + device.key.encode() + b'",' + parts[0][1:], stamps
            return parts[0], stamps
        head = b'{"device_key":"' + device.key.encode() + b'",' if key else b"{"
        return head + b'"readings":[' + b",".join(parts) + b"]}", stamps


def healthy_pool(seed: int) -> list[bytes]:
    """Encoded healthy readings without their `ts`: `"heart_rate":74,...}`."""
    rng = random.Random(seed)
    generator = VitalsGenerator(rng, deteriorates=False, onset_s=0, ramp_s=1)
    pool = []
    for _ in range(TEMPLATES):
        values: dict[str, Any] = generator.reading(0.0, datetime.now(UTC))
        values.pop("ts")
        pool.append(orjson.dumps(values)[1:])
    return pool


async def register_fleet(
    http: httpx.AsyncClient,
    *,
    devices: int,
    wards: int,
    run_id: str,
    concurrency: int = 32,
    seed: int = 1,
) -> Fleet:
    """Register one patient and one monitor per device (not timed: set-up for the vitals phases)."""
    rng = random.Random(seed)
    found: list[Device | None] = [None] * devices
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(devices):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            found[i] = await _register_one(http, i, wards=wards, run_id=run_id, rng=rng)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, devices))))
    return Fleet([d for d in found if d is not None], healthy_pool(seed))


async def _register_one(
    http: httpx.AsyncClient, i: int, *, wards: int, run_id: str, rng: random.Random
) -> Device:
    for attempt in range(20):
        patient = await http.post(
            "/api/patients",
            json={
                "given_name": f"Bench{i}",
                "family_name": "Monitor",
                "birth_date": f"{rng.randint(1935, 2005)}-0{rng.randint(1, 9)}-15",
                "sex": rng.choice(["female", "male"]),
                "ward": ward(i, wards),
            },
        )
        if patient.status_code == 201:
            break
        await asyncio.sleep(0.1 * (attempt + 1))  # a busy server (503/429) during set-up
    patient.raise_for_status()
    patient_id = patient.json()["id"]
    device_id = f"{run_id}-{i}-{uuid.uuid4().hex[:4]}"
    device = await http.post(
        "/api/devices",
        json={"device_id": device_id, "patient_id": patient_id, "kind": "bedside-monitor"},
    )
    device.raise_for_status()
    return Device(i, device_id, patient_id, device.json()["key"], ward(i, wards))
