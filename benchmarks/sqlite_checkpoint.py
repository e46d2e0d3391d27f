"""What SQLite's checkpoint interval costs the vitals store's writes, as the table grows.

Monitors send one reading at a time, so a worker's batch holds readings of many devices and
patients: each lands on its own page of the (device, ts) and (patient, ts) indexes, and a commit
of 200 readings rewrites a few hundred pages in the WAL. How often a checkpoint copies them back
decides how often the same page is copied again. This inserts batches of 200 such readings (1,000
devices, one patient each) with the store's own statement, in one transaction each, as the
worker does, for each interval in turn, each on a fresh database, and prints the wall time of
every 40,000 rows (median of a batch) and of the whole run.

    .venv/bin/python benchmarks/sqlite_checkpoint.py [--pages 1000 16384] [--rows 400000]
        [--synchronous FULL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.progress import Progress

from healthflow.ids import uuid7
from healthflow.storage.engine import open_database
from healthflow.vitals.store import _dialect_insert, series_metadata, vitals

BATCH = 200
DEVICES = 1000
MEASUREMENTS = (
    '{"heart_rate":70,"resp_rate":16,"spo2":97,"systolic_bp":120,"diastolic_bp":80,'
    '"temperature":36.6,"consciousness":"A"}'
)


async def run(pages: int, rows: int, synchronous: str, progress: Progress) -> str:
    with tempfile.TemporaryDirectory() as folder:
        db = open_database(
            f"sqlite+aiosqlite:///{folder}/series.db",
            sqlite_synchronous=synchronous,
            sqlite_checkpoint_pages=pages,
        )
        await db.create_schema(series_metadata)
        insert = _dialect_insert(db)(vitals).on_conflict_do_nothing().returning(vitals.c.id)
        start = datetime.now(UTC)
        patients = [uuid7(start) for _ in range(DEVICES)]
        made = 0

        def batch() -> list[dict[str, Any]]:
            nonlocal made
            found = []
            for _ in range(BATCH):
                made += 1
                ts = start + timedelta(milliseconds=made)
                found.append(
                    {
                        "id": str(uuid7(ts)),
                        "patient_id": patients[made % DEVICES],
                        "device_id": f"monitor-{made % DEVICES}",
                        "ts": ts,
                        "measurements": MEASUREMENTS,
                        "assessment": '{"score":1,"risk":"low"}',
                        "alert_id": None,
                        "alert_change": None,
                        "received_at": ts,
                    }
                )
            return found

        task = progress.add_task(f"{pages} pages", total=rows)
        per_step: list[float] = []
        times: list[float] = []
        began = time.perf_counter()
        for n in range(rows // BATCH):
            values = batch()
            at = time.perf_counter()
            async with db.writer.begin() as conn:
                stored = len((await conn.execute(insert, values)).scalars().all())
            times.append(time.perf_counter() - at)
            assert stored == BATCH
            progress.advance(task, BATCH)
            if (n + 1) * BATCH % 40_000 == 0:
                per_step.append(statistics.median(times))
                times.clear()
        total = time.perf_counter() - began
        await db.dispose()
    steps = " ".join(f"{1000 * t:.1f}" for t in per_step)
    return f"checkpoint every {pages:>6} pages: {total:6.1f} s in all; ms a batch: {steps}"


async def main(pages: list[int], rows: int, synchronous: str) -> None:
    with Progress(transient=True) as progress:
        lines = [await run(p, rows, synchronous, progress) for p in pages]
    print(f"batches of {BATCH}, synchronous={synchronous}; ms a batch, median of each 40,000 rows:")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, nargs="+", default=[1000, 16_384])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--synchronous", default="FULL")
    args = parser.parse_args()
    asyncio.run(main(args.pages, args.rows, args.synchronous))
