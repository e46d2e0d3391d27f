"""Same-run raw baselines: what the bare tools do on the same machine, servers and disk, so our
figures read as overhead ratios rather than absolute numbers of a shared, noisy machine.

- broker: a bare aio-pika loop on the same RabbitMQ, publisher confirms on, persistent messages
  the size of our VitalSignsRecorded events, a quorum queue, one consumer acking each message;
- database: batched inserts of vitals-sized rows into the same database (sqlite3 with the
  server's `synchronous`, or asyncpg `executemany` and `COPY`), one transaction per batch of
  HEALTHFLOW_WORKER_BATCH_SIZE rows, and single-row transactions (two inserts each, a
  registration's shape);
- WebSocket: a minimal `websockets` server broadcasting to the same clients, topics and rate as
  the latency phase.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from healthflow.bench.context import Params
from healthflow.bench.latency import client_topics
from healthflow.bench.live import Dashboards
from healthflow.bench.stats import percentiles

BATCH = 200  # HEALTHFLOW_WORKER_BATCH_SIZE's default
ROW = orjson.dumps(
    {
        "ts": "2026-11-30T10:00:00.000+00:00",
        "heart_rate": 74,
        "resp_rate": 15,
        "spo2": 98,
        "systolic_bp": 124,
        "diastolic_bp": 78,
        "temperature": 36.8,
        "on_oxygen": False,
        "consciousness": "A",
        "news2": {"total": 0, "risk": "low", "sub_scores": {"resp_rate": 0, "spo2": 0}},
    }
).decode()


def sqlite_batched(folder: Path, seconds: float, synchronous: str) -> dict[str, Any]:
    """Rows/s through sqlite3: BATCH vitals-sized rows per transaction, WAL, same durability."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        db = sqlite3.connect(Path(tmp) / "bare.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute(
            "CREATE TABLE vitals (device_id TEXT, ts TEXT, patient_id TEXT, payload TEXT, "
            "PRIMARY KEY (device_id, ts))"
        )
        rows = 0
        patient = str(uuid.uuid4())
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            batch = [(f"d{i % 1000}", f"{rows + i}", patient, ROW) for i in range(BATCH)]
            db.execute("BEGIN")
            db.executemany("INSERT INTO vitals VALUES (?, ?, ?, ?)", batch)
            db.execute("COMMIT")
            rows += BATCH
        elapsed = time.perf_counter() - started
        transactions = _sqlite_transactions(db, seconds / 2)
        db.close()
    return {
        "batched_rows_per_s": round(rows / elapsed),
        "batch": BATCH,
        "single_row_transactions_per_s": transactions,
        "synchronous": synchronous,
    }


def _sqlite_transactions(db: sqlite3.Connection, seconds: float) -> float:
    db.execute("CREATE TABLE reg (id INTEGER PRIMARY KEY, payload TEXT)")
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        db.execute("BEGIN")
        db.execute("INSERT INTO reg (payload) VALUES (?)", (ROW,))
        db.execute("INSERT INTO reg (payload) VALUES (?)", (ROW,))
        db.execute("COMMIT")
        done += 1
    return round(done / (time.perf_counter() - started), 1)


async def postgres_batched(dsn: str, seconds: float) -> dict[str, Any]:
    """Rows/s through asyncpg into the bench database: executemany and COPY, BATCH per commit."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE bare_vitals (device_id text, ts text, patient_id text, payload text, "
            "PRIMARY KEY (device_id, ts))"
        )
        patient = str(uuid.uuid4())
        rates: dict[str, Any] = {"batch": BATCH}
        for method in ("executemany", "copy"):
            rows = 0
            started = time.perf_counter()
            while time.perf_counter() - started < seconds / 2:
                batch = [
                    (f"d{i % 1000}", f"{method}{rows + i}", patient, ROW) for i in range(BATCH)
                ]
                async with conn.transaction():
                    if method == "copy":
                        await conn.copy_records_to_table("bare_vitals", records=batch)
                    else:
                        await conn.executemany(
                            "INSERT INTO bare_vitals VALUES ($1, $2, $3, $4)", batch
                        )
                rows += BATCH
            rates[f"{method}_rows_per_s"] = round(rows / (time.perf_counter() - started))
        await conn.execute("CREATE TABLE bare_reg (id bigserial PRIMARY KEY, payload text)")
        done = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds / 2:
            async with conn.transaction():
                await conn.execute("INSERT INTO bare_reg (payload) VALUES ($1)", ROW)
                await conn.execute("INSERT INTO bare_reg (payload) VALUES ($1)", ROW)
            done += 1
        rates["single_row_transactions_per_s"] = round(done / (time.perf_counter() - started), 1)
        await conn.execute("DROP TABLE bare_vitals; DROP TABLE bare_reg")
    finally:
        await conn.close()
    return rates


async def rabbit_loop(url: str, seconds: float, queue_name: str) -> dict[str, Any]:
    """Messages/s from publish (confirmed, persistent) to consumed and acked, quorum queue."""
    import aio_pika

    body = orjson.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/bench",
            "type": "VitalSignsRecorded",
            "time": "2026-11-30T10:00:00+00:00",
            "subject": str(uuid.uuid4()),
            "data": orjson.loads(ROW) | {"device_id": "bench-1", "patient_id": str(uuid.uuid4())},
        }
    )
    connection = await aio_pika.connect_robust(url)
    async with connection:
        publisher = await connection.channel(publisher_confirms=True)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=64)  # HEALTHFLOW_BROKER_PREFETCH's default
        queue = await consumer.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        consumed = 0
        published = 0
        done = asyncio.Event()
        stop_publishing = False

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal consumed
            await message.ack()
            consumed += 1
            if stop_publishing and consumed >= published:
                done.set()

        tag = await queue.consume(on_message)
        started = time.perf_counter()
        # batches of confirmed publishes in flight, as the outbox relay sends them
        while time.perf_counter() - started < seconds:
            await asyncio.gather(
                *(
                    publisher.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=queue_name,
                    )
                    for _ in range(500)
                )
            )
            published += 500
        stop_publishing = True
        if consumed < published:
            await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - started
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
    return {
        "messages_per_s": round(consumed / elapsed),
        "messages": consumed,
        "message_bytes": len(body),
    }


async def websocket_broadcast(p: Params, *, rate: float, seconds: float) -> dict[str, Any]:
    """The same clients and topics as the latency phase, fed by a bare `websockets` server."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "healthflow.bench.bare_ws",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        port = json.loads(await process.stdout.readline())["port"]
        # ward topics only: the bare server sends each message to one ward's clients
        topics = client_topics(p.clients, p.wards, [])
        async with Dashboards(f"ws://127.0.0.1:{port}/", topics, p.client_procs) as dashboards:
            process.stdin.write(f"go {rate} {seconds}\n".encode())
            await process.stdin.drain()
            sent = json.loads(await process.stdout.readline())
            await asyncio.sleep(1.0)
            report = await dashboards.report()
        process.stdin.write(b"quit\n")
        await process.stdin.drain()
        await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return {
        "rate_per_s": rate,
        "published": sent["published"],
        "deliveries_expected": sent["deliveries"],
        "deliveries": len(report.bare_latencies_ms),
        "latency_ms": percentiles(report.bare_latencies_ms),
        "server_cpu_s": round(sent["cpu_s"], 2),
        "clients": report.to_dict(),
    }
