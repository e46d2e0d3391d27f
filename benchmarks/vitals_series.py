"""How long the patient detail's chart queries take over a day of one-per-second readings.

Compares, on one database in one run: the thinned day (`every=120`, ≤ 720 points), the thinned
hour (`every=5`) and what a client would need without thinning (the whole day page by page,
1,000 readings per request). Prints the median of N runs of each, and their ratios.

    .venv/bin/python benchmarks/vitals_series.py
    .venv/bin/python benchmarks/vitals_series.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from scratch import scratch_databases  # benchmarks/scratch.py: run as a script
from sqlalchemy import insert

from healthflow.storage.engine import Database
from healthflow.vitals import store as schema

DAY_S = 86_400
READING = {"heart_rate": 74.0, "resp_rate": 15.0, "spo2": 97.0, "systolic_bp": 124.0}
ASSESSMENT = {
    "total": 0,
    "risk": "low",
    "sub_scores": {"heart_rate": 0, "resp_rate": 0, "spo2": 0, "systolic_bp": 0},
    "carried_forward": [],
    "missing": ["air_or_oxygen", "consciousness", "temperature"],
    "assessed_at": "",
    "spo2_scale": 1,
}


async def fill(db: Database, patient: uuid.UUID, start: datetime) -> None:
    await db.create_schema(schema.series_metadata)
    measurements = orjson.dumps(READING).decode()
    rows: list[dict[str, Any]] = []
    async with db.writer.begin() as conn:
        for second in range(DAY_S):
            ts = start + timedelta(seconds=second)
            assessment = orjson.dumps({**ASSESSMENT, "assessed_at": ts.isoformat()}).decode()
            rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "patient_id": patient,
                    "device_id": "mon-1",
                    "ts": ts,
                    "measurements": measurements,
                    "assessment": assessment,
                    "received_at": ts,
                }
            )
            if len(rows) == 5_000:
                await conn.execute(insert(schema.vitals), rows)
                rows = []
        if rows:
            await conn.execute(insert(schema.vitals), rows)


async def median_ms(run: Callable[[], Awaitable[object]], times: int) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def measure(db: Database, label: str, times: int) -> None:
    patient = uuid.uuid4()
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(seconds=DAY_S)
    await fill(db, patient, start)
    store = schema.SqlVitalsStore(db)

    async def day_thinned() -> int:
        return len(await store.series(patient, since=start, limit=1000, every_s=120))

    async def hour_thinned() -> int:
        since = end - timedelta(hours=1)
        return len(await store.series(patient, since=since, limit=1000, every_s=5))

    async def day_paged() -> int:
        since, total = start, 0
        while True:
            page = await store.series(patient, since=since, limit=1000)
            total += len(page)
            if len(page) < 1000:
                return total
            since = page[-1].ts + timedelta(microseconds=1)

    points = (await day_thinned(), await hour_thinned(), await day_paged())
    day = await median_ms(day_thinned, times)
    hour = await median_ms(hour_thinned, times)
    paged = await median_ms(day_paged, max(3, times // 3))
    print(f"{label}: {DAY_S:,} readings of one patient, median of {times} runs")
    print(f"  day, every=120:  {points[0]:>6,} points  {day:8.1f} ms")
    print(f"  hour, every=5:   {points[1]:>6,} points  {hour:8.1f} ms")
    print(f"  day, unthinned:  {points[2]:>6,} points  {paged:8.1f} ms  (87 requests of 1,000)")
    print(f"  unthinned / thinned day: {paged / day:.1f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=9)
    parser.add_argument("--postgres", help="server URL; a scratch database is made and dropped")
    args = parser.parse_args()
    async for label, db in scratch_databases(args.postgres):
        await measure(db, label, args.times)


if __name__ == "__main__":
    asyncio.run(main())
