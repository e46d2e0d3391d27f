"""What each stage of the vitals pipeline costs per reading, in one process without HTTP.

Builds the embedded platform (SQLite, in-process bus) in a temporary folder, registers P patients
with one monitor each, then runs each stage by itself over the same readings and reports CPU and
wall time per reading:

  parse      a device's JSON batch to readings (what the HTTP route does with the body)
  intake     TelemetryService.ingest: checks, the outbox rows, one transaction per batch
  relay      reading the outbox back (SqlTelemetryOutbox.pending), then marking it published
  worker     Escalation.handle_batch: the vitals store, NEWS2, alerts, live pushes
  mqtt       the MQTT subscriber's path for one-reading messages, as a monitor sends them: the
             topic and JSON, the device key, the intake; one message per device at a time, side
             by side as the subscriber stores what arrived together (not part of "all stages",
             it is the intake by another road)

    .venv/bin/python benchmarks/stages.py [--patients 50] [--per-device 1000] [--rounds 3]
        [--mqtt-messages 20]

CPU is the process's (the SQLite threads included), with the collector set as `serve` sets
it; each figure is the median of the rounds, each round on a fresh platform. The end-to-end
benchmark is `healthflow bench` (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiomqtt
import orjson
import structlog

from healthflow.cli import GC_THRESHOLDS
from healthflow.composition.platform import Platform, build_platform
from healthflow.patients.domain import NewPatient, Sex
from healthflow.settings import Settings
from healthflow.vitals import intake_store
from healthflow.vitals.domain import Device
from healthflow.vitals.escalation import Escalation
from healthflow.vitals.ingest_mqtt import Broker, LocalIntake, MqttIngest
from healthflow.vitals.schemas import parse_readings_json


def batch_body(now: datetime, device: int, count: int) -> bytes:
    start = now - timedelta(seconds=2 * count + 60)
    return orjson.dumps(
        {
            "readings": [
                {
                    "ts": (start + timedelta(seconds=2 * k, milliseconds=device)).isoformat(),
                    "heart_rate": 70 + k % 40,
                    "resp_rate": 14 + k % 8,
                    "spo2": 93 + k % 6,
                    "systolic_bp": 105 + k % 30,
                    "diastolic_bp": 70,
                    "temperature": 36.5 + (k % 20) / 10,
                    "consciousness": "A",
                }
                for k in range(count)
            ]
        }
    )


MQTT_STAGE = "mqtt: one-reading messages"


def one_reading(ts: datetime, device: int) -> dict[str, Any]:
    return {
        "ts": (ts - timedelta(milliseconds=device)).isoformat(),
        "heart_rate": 72,
        "resp_rate": 16,
        "spo2": 97,
        "systolic_bp": 120,
        "diastolic_bp": 70,
        "temperature": 36.8,
        "consciousness": "A",
    }


async def timed(
    results: dict[str, list[tuple[float, float]]],
    name: str,
    readings: int,
    stage: Callable[[], Awaitable[Any]],
) -> Any:
    cpu, wall = time.process_time(), time.perf_counter()
    out = await stage()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    results.setdefault(name, []).append((cpu / readings * 1e6, wall / readings * 1e6))
    return out


async def monitored_platform(patients: int) -> tuple[Platform, list[Device], list[str]]:
    """The embedded platform in a temporary folder with `patients` patients, a monitor each:
    the platform, the devices and their keys."""
    # no backlog limit: the relay does not run here, every reading waits in the outbox
    folder = tempfile.mkdtemp(prefix="healthflow-stages-")
    platform = build_platform(Settings(data_dir=folder, telemetry_backlog_limit=10**9))
    await platform.prepare_storage()
    telemetry = platform.telemetry
    assert telemetry is not None
    devices, keys = [], []
    for i in range(patients):
        new = NewPatient(
            given_name="Stage",
            family_name="Bench",
            birth_date=date(1960, 1, 1),
            sex=Sex.FEMALE,
            ward=f"W{i % 5}",
            bed=None,
        )
        patient = await platform.patients.register(new)
        registered = await telemetry.devices.register(
            f"stage-{i}", patient_id=patient.id, kind="monitor"
        )
        devices.append(registered.device)
        keys.append(registered.key)
    return platform, devices, keys


async def one_round(
    args: argparse.Namespace, results: dict[str, list[tuple[float, float]]]
) -> None:
    platform, devices, keys = await monitored_platform(args.patients)
    telemetry = platform.telemetry
    assert telemetry is not None
    settings = platform.settings
    now = datetime.now(UTC)
    bodies = [batch_body(now, i, args.per_device) for i in range(args.patients)]
    total = args.patients * args.per_device

    async def parse() -> list[Any]:
        return [parse_readings_json(body) for body in bodies]

    parsed = await timed(results, "parse", total, parse)

    async def intake() -> None:
        for device, readings in zip(devices, parsed, strict=True):
            await telemetry.intake.ingest(device, readings, transport="http")

    await timed(results, "intake", total, intake)
    outbox = intake_store.SqlTelemetryOutbox(platform.patients_db)

    async def relay_read() -> list[Any]:
        entries, cursor = [], 0
        while batch := await outbox.pending(after_seq=cursor, limit=settings.outbox_batch_size):
            entries += batch
            cursor = batch[-1].seq
        return entries

    entries = await timed(results, "relay: read", total, relay_read)

    async def relay_mark() -> None:
        step = settings.outbox_batch_size
        for k in range(0, len(entries), step):
            await outbox.mark_published([e.seq for e in entries[k : k + step]], now)

    await timed(results, "relay: mark published", total, relay_mark)
    escalation = Escalation(telemetry.monitor, platform.patients)
    events = [e.event for e in entries]
    step = settings.worker_batch_size

    async def worker() -> None:
        for k in range(0, len(events), step):
            await escalation.handle_batch(events[k : k + step])

    await timed(results, f"worker (batches of {step})", total, worker)

    mqtt = MqttIngest(
        LocalIntake(telemetry.intake),
        Broker.from_url("mqtt://127.0.0.1"),  # never connected: messages are handed in
        client_id="stages",
        max_message_bytes=settings.max_body_bytes,
        queue_size=settings.worker_queue_size,
    )
    later = now + timedelta(seconds=1)  # after the batches above: none is a duplicate
    arrivals = [
        [
            aiomqtt.Message(
                f"devices/{device.device_id}/messages/events/",
                orjson.dumps(
                    {"device_key": key, **one_reading(later + timedelta(seconds=2 * k), i)}
                ),
                qos=1,
                retain=False,
                mid=k * args.patients + i,
                properties=None,
            )
            for i, (device, key) in enumerate(zip(devices, keys, strict=True))
        ]
        for k in range(args.mqtt_messages)
    ]

    async def mqtt_messages() -> None:
        for arrived in arrivals:
            await mqtt._store_all(arrived)

    await timed(results, MQTT_STAGE, args.patients * args.mqtt_messages, mqtt_messages)
    await platform.patients_db.dispose()
    await platform.analytics_db.dispose()


async def main(args: argparse.Namespace) -> None:
    results: dict[str, list[tuple[float, float]]] = {}
    for n in range(args.rounds):
        print(f"round {n + 1}/{args.rounds} ...", flush=True)
        await one_round(args, results)
    print(f"\n{args.patients} devices x {args.per_device} readings, median of {args.rounds} rounds")
    print(f"{'stage':28s} {'CPU µs/reading':>15s} {'wall µs/reading':>16s}")
    cpu_total = 0.0
    for name, runs in results.items():
        cpu = statistics.median(c for c, _ in runs)
        wall = statistics.median(w for _, w in runs)
        if name == MQTT_STAGE:
            ceiling = 1e6 / cpu
            print(
                f"{name:28s} {cpu:15.1f} {wall:16.1f}   -> at most {ceiling:,.0f} messages/s/core"
            )
            continue
        cpu_total += cpu
        print(f"{name:28s} {cpu:15.1f} {wall:16.1f}")
    ceiling = 1e6 / cpu_total
    per_core = f"-> at most {ceiling:,.0f} readings/s/core"
    print(f"{'all stages (without mqtt)':28s} {cpu_total:15.1f}   {per_core}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--per-device", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mqtt-messages", type=int, default=20, help="per device")
    # the platform logs every registration: quiet here, the figures are the output
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    # the collector as `serve` runs it: with the defaults, full passes over what a stage keeps
    # (the intake's copy of what it committed, up to 10,000 events, waits for a relay that
    # does not run here) would be charged to whichever stage allocates next
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    asyncio.run(main(parser.parse_args()))
