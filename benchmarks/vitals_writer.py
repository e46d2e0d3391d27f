"""How long a batch of new readings holds the vitals writer: `SqlVitalsStore.record_many` alone.

The vitals database has one writer (SQLite) or row locks per patient (PostgreSQL), so the time a
worker batch spends in `record_many` bounds how many readings a second the pipeline can score.
This drives the store by itself, with batches as many monitors make them (consecutive readings
belong to different patients), and prints the median wall time and the event loop thread's CPU
per batch (the SQLite thread's work is in the wall time, not in the CPU).

    .venv/bin/python benchmarks/vitals_writer.py [--url URL] [--batches 150] [--size 200]
        [--patients 400] [--remembered-states N]
    PYTHONPATH=<other worktree>/src .venv/bin/python benchmarks/vitals_writer.py   # other code

The default URL is a fresh SQLite file; a PostgreSQL URL must name an empty database.
`--remembered-states 0` turns off the store's copy of the states it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

from healthflow.storage.engine import Database, open_database
from healthflow.vitals import store as schema
from healthflow.vitals.alerts import Alert
from healthflow.vitals.assessment import PatientVitals, assess
from healthflow.vitals.domain import Reading
from healthflow.vitals.events import RecordedReading
from healthflow.vitals.ports import Outcome

WARMUP = 10  # batches left out of the medians (caches, the first pages of each index)


def scored(
    recorded: RecordedReading, state: PatientVitals | None, _: Alert | None
) -> tuple[PatientVitals, Outcome]:
    new_state, assessment = assess(state, recorded.reading)
    return new_state, Outcome(assessment, None, None)


def _store(db: Database, remembered: int | None) -> schema.SqlVitalsStore:
    if remembered is None:
        return schema.SqlVitalsStore(db)
    if "remembered_states" not in inspect.signature(schema.SqlVitalsStore).parameters:
        raise SystemExit("this code's SqlVitalsStore keeps no copy of states")
    return schema.SqlVitalsStore(db, remembered_states=remembered)


async def main(args: argparse.Namespace) -> None:
    url = args.url or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/vitals.db"
    db = open_database(url)
    await db.create_schema(schema.series_metadata)
    store = _store(db, args.remembered_states)
    patients = [uuid.uuid4() for _ in range(args.patients)]
    start = datetime.now(UTC).replace(microsecond=0)
    walls: list[float] = []
    cpus: list[float] = []
    n = 0
    for _ in range(args.batches):
        batch = []
        for _ in range(args.size):
            n += 1
            ts = start + timedelta(milliseconds=n)
            reading = Reading(ts=ts, heart_rate=70.0 + n % 30, resp_rate=16.0, spo2=97.0)
            device = f"mon-{n % args.patients}"
            batch.append(
                RecordedReading(str(uuid.uuid4()), device, patients[n % args.patients], reading, ts)
            )
        wards = {r.patient_id: "ICU" for r in batch}
        cpu, wall = time.thread_time(), time.perf_counter()
        await store.record_many(batch, scored, wards=wards)
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.thread_time() - cpu) * 1000)
    await db.dispose()
    print(
        f"{db.backend}: {args.size} readings a batch over {args.patients} patients, "
        f"median of {args.batches - WARMUP} batches: "
        f"wall {statistics.median(walls[WARMUP:]):.2f} ms, "
        f"event loop CPU {statistics.median(cpus[WARMUP:]):.2f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None)
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--patients", type=int, default=400)
    parser.add_argument("--remembered-states", type=int, default=None)
    asyncio.run(main(parser.parse_args()))
