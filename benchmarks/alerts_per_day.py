"""How long the analytics dashboard's alerts per day take over many stored alerts.

Fills the alerts table (through the Alembic migrations, so with its real indexes) with `--rows`
alerts spread evenly over 120 days, a third critical, then times `SqlVitalsStore.raised_by_day`
(the index-backed GROUP BY the dashboard summary runs) for windows of 7, 30 and 90 days. Prints
the median of N runs of each; the cost follows the alerts inside the window, not the table size.

    .venv/bin/python benchmarks/alerts_per_day.py
    .venv/bin/python benchmarks/alerts_per_day.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from scratch import scratch_databases  # benchmarks/scratch.py: run as a script
from sqlalchemy import insert, text

from healthflow.storage import migrations
from healthflow.storage.engine import Database
from healthflow.vitals.store import SqlVitalsStore, alerts

SPAN_DAYS = 120
TODAY = date(2026, 11, 30)
BATCH = 20_000


async def fill(db: Database, rows: int) -> None:
    start = datetime.combine(TODAY - timedelta(days=SPAN_DAYS - 1), datetime.min.time(), UTC)
    step = timedelta(days=SPAN_DAYS) / rows
    batch: list[dict[str, Any]] = []
    async with db.writer.begin() as conn:
        for n in range(rows):
            at = start + step * n
            batch.append(
                {
                    "id": uuid.uuid4(),
                    "patient_id": uuid.uuid4(),
                    "ward": "ICU",
                    "severity": "critical" if n % 3 == 0 else "urgent",
                    "status": "resolved",
                    "score": 7,
                    "risk": "high",
                    "peak_score": 7,
                    "readings": 1,
                    "calm_readings": 0,
                    "opened_at": at,
                    "updated_at": at,
                    "version": 1,
                }
            )
            if len(batch) == BATCH:
                await conn.execute(insert(alerts), batch)
                batch = []
        if batch:
            await conn.execute(insert(alerts), batch)
        if db.backend == "postgresql":
            await conn.execute(text("ANALYZE alerts"))


async def measure(db: Database, label: str, rows: int, times: int) -> None:
    await migrations.upgrade(db, migrations.ANALYTICS)
    await fill(db, rows)
    store = SqlVitalsStore(db)
    print(f"{label}: {rows:,} alerts over {SPAN_DAYS} days")
    for days in (7, 30, 90):
        first_day = TODAY - timedelta(days=days - 1)
        spent = []
        for _ in range(times):
            began = time.perf_counter()
            found = await store.raised_by_day(first_day=first_day, last_day=TODAY)
            spent.append(time.perf_counter() - began)
        counted = sum(sum(by.values()) for by in found.values())
        print(
            f"  {days:>2} days ({counted:,} alerts in the window): "
            f"median {statistics.median(spent) * 1000:.1f} ms"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--times", type=int, default=7)
    parser.add_argument("--postgres", help="server URL; a scratch database is made and dropped")
    args = parser.parse_args()
    async for label, db in scratch_databases(args.postgres):
        await measure(db, label, args.rows, args.times)


if __name__ == "__main__":
    asyncio.run(main())
