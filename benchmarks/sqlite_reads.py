"""What a read through the embedded SQLite engines costs the event loop, and how often a burst
of reads opens new connections.

    .venv/bin/python benchmarks/sqlite_reads.py [N] [CONCURRENCY]
    PYTHONPATH=<other worktree>/src .venv/bin/python benchmarks/sqlite_reads.py ...   # other code

`open_database` as `healthflow serve` opens a database (the one-trip driver, its pools), a
temporary file with one small table. Prints one JSON line: loop CPU microseconds (the event
loop's thread) per reader checkout and return, per point read (checkout, one SELECT, return)
and per write transaction of three statements, one at a time; then CONCURRENCY tasks reading
at once, each holding its connection across one more trip (as a request does between two
statements), with the reader connections opened during those N reads (`opened`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
from sqlalchemy import event, text

from healthflow.storage.engine import open_database

SELECT = text("SELECT id, v FROM t WHERE id = :id")


async def per_call(n: int, call: Callable[[], Awaitable[Any]]) -> float:
    for _ in range(min(200, n)):  # warm up: connections open, statements compiled
        await call()
    cpu = time.thread_time()
    for _ in range(n):
        await call()
    return round((time.thread_time() - cpu) / n * 1e6, 1)


async def main(n: int, concurrency: int) -> dict[str, Any]:
    db = open_database(f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'reads.db'}")
    async with db.writer.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        await conn.execute(text("CREATE TABLE head (id INTEGER PRIMARY KEY, n INTEGER)"))
        await conn.execute(text("INSERT INTO t VALUES (1, 'a')"))
        await conn.execute(text("INSERT INTO head VALUES (1, 0)"))

    async def checkout() -> None:
        async with db.reader.connect():
            pass

    async def point_read() -> None:
        async with db.reader.connect() as conn:
            (await conn.execute(SELECT, {"id": 1})).all()

    async def write() -> None:
        async with db.writer.begin() as conn:
            await conn.execute(text("SELECT n FROM head WHERE id = 1"))
            await conn.execute(text("INSERT INTO t (v) VALUES ('b')"))
            await conn.execute(text("UPDATE head SET n = n + 1 WHERE id = 1"))

    figures: dict[str, Any] = {
        "checkout_us": await per_call(n, checkout),
        "point_read_us": await per_call(n, point_read),
        "write_3_statements_us": await per_call(n // 3, write),
    }

    opened = 0

    def count(*_: Any) -> None:
        nonlocal opened
        opened += 1

    event.listen(db.reader.sync_engine, "connect", count)

    async def request_like() -> None:
        async with db.reader.connect() as conn:
            (await conn.execute(SELECT, {"id": 1})).all()
            (await conn.execute(SELECT, {"id": 1})).all()

    numbers = iter(range(n))

    async def reader() -> None:
        for _ in numbers:
            await request_like()

    cpu = time.thread_time()
    await asyncio.gather(*(reader() for _ in range(concurrency)))
    figures["concurrent_read_us"] = round((time.thread_time() - cpu) / n * 1e6, 1)
    figures["opened"] = opened
    await db.dispose()
    return {"n": n, "concurrency": concurrency, **figures}


if __name__ == "__main__":
    count_ = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    parallel = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    print(json.dumps(uvloop.run(main(count_, parallel))))
