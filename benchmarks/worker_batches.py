"""What a vitals worker batch costs by its size: the fixed cost a small batch pays.

At a hospital's pace (1,000 monitors posting every 5 s) the worker's batches are small, so what
a batch costs whatever its size (its transaction, its statements, the trips to the SQLite
thread) decides the CPU, more than the per-reading cost `stages.py` measures at 200 a batch.

Builds the embedded platform (SQLite, in-process bus) in a temporary folder, registers P patients
with one monitor each, takes the readings in through the intake, reads their events back from
the outbox, then hands them to `Escalation.handle_batch` in batches of each size (consecutive
events are different patients, as from many monitors), and prints CPU per batch and per reading
(the process's, the SQLite threads included). Each size gets readings of its own: none repeats.

    .venv/bin/python benchmarks/worker_batches.py [--sizes 1,2,5,20,50,200] [--patients 400]
    PYTHONPATH=<other worktree>/src .venv/bin/python benchmarks/worker_batches.py   # other code
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from datetime import UTC, datetime

import structlog
from stages import batch_body, monitored_platform

from healthflow.vitals import intake_store
from healthflow.vitals.escalation import Escalation
from healthflow.vitals.schemas import parse_readings_json


async def main(args: argparse.Namespace) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sizes = [int(s) for s in args.sizes.split(",")]
    platform, devices, _ = await monitored_platform(args.patients)
    telemetry = platform.telemetry
    assert telemetry is not None
    # enough readings for every size: at least `--batches` batches, and `--min-readings`
    needed = sum(max(args.min_readings, size * args.batches) for size in sizes)
    per_device = min(1000, -(-needed // args.patients))
    now = datetime.now(UTC)
    for i, device in enumerate(devices):
        readings = parse_readings_json(batch_body(now, i, per_device))
        await telemetry.intake.ingest(device, readings, transport="http")
    outbox = intake_store.SqlTelemetryOutbox(platform.patients_db)
    by_device: dict[str, list] = {}
    cursor = 0
    while batch := await outbox.pending(after_seq=cursor, limit=5000):
        for entry in batch:
            by_device.setdefault(entry.event.data["device_id"], []).append(entry.event)
        cursor = batch[-1].seq
    # reading k of every device, then reading k+1: a batch holds different patients' readings
    events = [evs[k] for k in range(per_device) for evs in by_device.values() if k < len(evs)]
    escalation = Escalation(telemetry.monitor, platform.patients)
    print(f"{args.patients} patients, {len(events):,} readings")
    print(f"{'batch':>6s} {'CPU ms/batch':>13s} {'CPU µs/reading':>15s} {'batches':>8s}")
    position = 0
    for size in sizes:
        count = min(len(events) - position, max(args.min_readings, size * args.batches))
        count -= count % size
        cpu = time.process_time()
        for k in range(position, position + count, size):
            await escalation.handle_batch(events[k : k + size])
        cpu = time.process_time() - cpu
        position += count
        batches = count // size
        print(f"{size:6d} {cpu / batches * 1e3:13.2f} {cpu / count * 1e6:15.1f} {batches:8d}")
    await platform.patients_db.dispose()
    await platform.analytics_db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2,5,20,50,200")
    parser.add_argument("--patients", type=int, default=400)
    parser.add_argument("--batches", type=int, default=40, help="at least this many per size")
    parser.add_argument("--min-readings", type=int, default=200, help="at least this many")
    asyncio.run(main(parser.parse_args()))
