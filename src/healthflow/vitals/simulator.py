"""`healthflow simulate`: bedside monitors for the demo, the end-to-end tests and benchmarks.

Registers patients and their devices through the public API, then streams vitals over HTTP or
MQTT: each patient has a baseline with noise, and K of them deteriorate over a ramp into a high
NEWS2 (fast breathing, low SpO2 on oxygen, tachycardia, hypotension, fever, then drowsiness).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import aiomqtt
import httpx
import orjson

from healthflow.vitals.ingest_mqtt import TOPIC, Broker

Via = Literal["http", "mqtt"]

BASELINE: dict[str, float] = {
    "heart_rate": 74.0,
    "resp_rate": 15.0,
    "spo2": 97.5,
    "systolic_bp": 124.0,
    "diastolic_bp": 78.0,
    "temperature": 36.8,
}
DETERIORATED: dict[str, float] = {
    "heart_rate": 136.0,
    "resp_rate": 27.0,
    "spo2": 89.0,
    "systolic_bp": 88.0,
    "diastolic_bp": 52.0,
    "temperature": 39.4,
}
NOISE: dict[str, float] = {
    "heart_rate": 3.0,
    "resp_rate": 1.0,
    "spo2": 0.6,
    "systolic_bp": 4.0,
    "diastolic_bp": 3.0,
    "temperature": 0.1,
}
# Noise is clipped so a healthy baseline stays in its NEWS2 zero band: a demo patient should not
# raise alerts from jitter alone.
HEALTHY_LIMITS: dict[str, tuple[float, float]] = {
    "heart_rate": (55, 88),
    "resp_rate": (12, 20),
    "spo2": (96, 100),
    "systolic_bp": (112, 150),
    "diastolic_bp": (60, 95),
    "temperature": (36.2, 37.8),
}


class VitalsGenerator:
    """One patient's vitals over time: baseline with noise, maybe sliding into deterioration."""

    def __init__(
        self,
        rng: random.Random,
        *,
        deteriorates: bool,
        onset_s: float,
        ramp_s: float,
        recover_at_s: float | None = None,
    ) -> None:
        self._rng = rng
        self.deteriorates = deteriorates
        self._onset = onset_s
        self._ramp = max(ramp_s, 1e-6)
        self._recover_at = recover_at_s
        self._offset = {name: rng.uniform(-0.3, 0.3) * NOISE[name] for name in BASELINE}

    def progress(self, elapsed_s: float) -> float:
        """0 at baseline, 1 fully deteriorated; back to 0 once treatment worked (recover_at_s)."""
        if not self.deteriorates:
            return 0.0
        if self._recover_at is not None and elapsed_s >= self._recover_at:
            return 0.0
        return min(max((elapsed_s - self._onset) / self._ramp, 0.0), 1.0)

    def reading(self, elapsed_s: float, ts: datetime) -> dict[str, Any]:
        p = self.progress(elapsed_s)
        values: dict[str, Any] = {"ts": ts.isoformat()}
        for name, base in BASELINE.items():
            value = base + (DETERIORATED[name] - base) * p + self._offset[name]
            value += self._rng.gauss(0, NOISE[name])
            if p == 0.0:
                low, high = HEALTHY_LIMITS[name]
                value = min(max(value, low), high)
            values[name] = round(value, 1) if name == "temperature" else round(value)
        values["spo2"] = min(values["spo2"], 100)
        values["on_oxygen"] = p >= 0.5
        values["consciousness"] = "V" if p >= 0.9 else "A"
        return values


@dataclass
class SimulatedDevice:
    device_id: str
    patient_id: str
    key: str
    vitals: VitalsGenerator


@dataclass
class Tally:
    sent: int = 0
    acknowledged: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Summary:
    devices: int
    deteriorating: list[str]
    sent: int
    acknowledged: int
    refused: int
    elapsed_s: float
    errors: list[str]

    @property
    def rate(self) -> float:
        return self.acknowledged / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Sender(Protocol):
    async def send(self, device: SimulatedDevice, reading: dict[str, Any]) -> bool:
        """True once the platform acknowledged the reading (202 or MQTT PUBACK)."""
        ...


class HttpSender:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(self, device: SimulatedDevice, reading: dict[str, Any]) -> bool:
        response = await self._client.post(
            f"/api/devices/{device.device_id}/telemetry",
            json=reading,
            headers={"X-Device-Key": device.key},
        )
        return response.status_code == 202


class MqttSender:
    """One MQTT connection per device, as real monitors have; QoS 1, PUBACK acknowledges."""

    def __init__(self, broker: Broker, *, topic_prefix: str) -> None:
        self._broker = broker
        self._prefix = topic_prefix
        self._clients: dict[str, aiomqtt.Client] = {}
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> MqttSender:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.__aexit__(None, None, None)

    async def send(self, device: SimulatedDevice, reading: dict[str, Any]) -> bool:
        client = self._clients.get(device.device_id)
        if client is None:
            client = aiomqtt.Client(
                self._broker.hostname,
                self._broker.port,
                username=self._broker.username,
                password=self._broker.password,
                identifier=f"{device.device_id}-{uuid.uuid4().hex[:6]}",
            )
            await self._stack.enter_async_context(client)
            self._clients[device.device_id] = client
        topic = self._prefix + TOPIC.replace("+", device.device_id).removesuffix("#")
        payload = orjson.dumps({"device_key": device.key, **reading})
        await client.publish(topic, payload, qos=1)
        return True


async def register(
    client: httpx.AsyncClient,
    *,
    devices: int,
    deteriorate: int,
    duration_s: float,
    ramp_s: float | None,
    recover_at_s: float | None = None,
    ward: str,
    seed: int | None,
) -> list[SimulatedDevice]:
    """Register one patient and one bedside monitor per simulated device."""
    rng = random.Random(seed)
    run = uuid.UUID(int=rng.getrandbits(128)).hex[:8]
    ramp = ramp_s if ramp_s is not None else min(180.0, duration_s * 0.6)
    out: list[SimulatedDevice] = []
    for i in range(devices):
        patient = await client.post(
            "/api/patients",
            json={
                "given_name": f"Sim{i}",
                "family_name": f"Patient-{run}",
                "birth_date": f"{rng.randint(1935, 2005)}-0{rng.randint(1, 9)}-15",
                "sex": rng.choice(["female", "male"]),
                "ward": ward,
            },
        )
        patient.raise_for_status()
        patient_id = patient.json()["id"]
        device_id = f"sim-{run}-{i}"
        device = await client.post(
            "/api/devices",
            json={"device_id": device_id, "patient_id": patient_id, "kind": "bedside-monitor"},
        )
        device.raise_for_status()
        vitals = VitalsGenerator(
            random.Random(rng.getrandbits(64)),
            deteriorates=i < deteriorate,
            onset_s=duration_s * 0.1,
            ramp_s=ramp,
            recover_at_s=recover_at_s,
        )
        out.append(SimulatedDevice(device_id, patient_id, device.json()["key"], vitals))
    return out


async def stream(
    devices: list[SimulatedDevice],
    sender: Sender,
    *,
    rate: float,
    duration_s: float,
    on_progress: Callable[[Tally, float], None] = lambda tally, elapsed: None,
) -> Summary:
    """Send one reading per device every 1/rate seconds for duration_s; each device in order."""
    tally = Tally()
    interval = 1.0 / rate
    started = time.monotonic()

    async def one(device: SimulatedDevice, elapsed: float) -> None:
        reading = device.vitals.reading(elapsed, datetime.now(UTC))
        tally.sent += 1
        try:
            ok = await sender.send(device, reading)
        except (httpx.HTTPError, aiomqtt.MqttError) as exc:
            ok = False
            if len(tally.errors) < 10:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
        if ok:
            tally.acknowledged += 1
        else:
            tally.refused += 1

    tick = 0
    while (elapsed := time.monotonic() - started) < duration_s:
        await asyncio.gather(*(one(d, elapsed) for d in devices))
        on_progress(tally, elapsed)
        tick += 1
        await asyncio.sleep(max(0.0, started + tick * interval - time.monotonic()))
    elapsed = time.monotonic() - started
    on_progress(tally, elapsed)
    return Summary(
        devices=len(devices),
        deteriorating=[d.patient_id for d in devices if d.vitals.deteriorates],
        sent=tally.sent,
        acknowledged=tally.acknowledged,
        refused=tally.refused,
        elapsed_s=elapsed,
        errors=tally.errors,
    )
