"""The machine and the versions a result was measured with (best effort for the servers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import sqlite3
from importlib import metadata
from typing import Any

import psutil

from healthflow import __version__
from healthflow.bench.server import RABBIT_URL, REDIS_URL, Backend

LIBRARIES = (
    "fastapi",
    "uvicorn",
    "uvloop",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "aio-pika",
    "redis",
    "aiomqtt",
    "websockets",
    "orjson",
    "httpx",
)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo").read().splitlines():  # noqa: SIM115
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


async def versions(backend: Backend) -> dict[str, Any]:
    found: dict[str, Any] = {
        "healthflow": __version__,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }
    for name in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    servers: dict[str, str | None] = {}
    if backend.postgres_dsn:
        servers["postgresql"] = await _quietly(_postgres(backend.postgres_dsn))
    # RabbitMQ serves the broker baseline on either backend
    servers["rabbitmq"] = await _quietly(_rabbitmq())
    if backend.name == "server":
        servers["redis"] = await _quietly(_redis())
    if backend.mqtt_url:
        servers["mosquitto"] = await _quietly(_mosquitto(backend.mqtt_url))
    found["servers"] = servers
    return found


async def _quietly(probe: Any) -> str | None:
    try:
        async with asyncio.timeout(5):
            value: str = await probe
            return value
    except Exception:  # a version we cannot read is only missing from the report
        return None


async def _postgres(dsn: str) -> str:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def _rabbitmq() -> str:
    import aio_pika

    connection = await aio_pika.connect(RABBIT_URL)
    async with connection:
        assert connection.transport is not None
        properties = connection.transport.connection.server_properties
        return str(properties.get("version"))


async def _redis() -> str:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        return str((await client.info("server"))["redis_version"])
    finally:
        await client.aclose()


async def _mosquitto(url: str) -> str:
    import aiomqtt

    from healthflow.vitals.ingest_mqtt import Broker

    broker = Broker.from_url(url)
    async with aiomqtt.Client(broker.hostname, broker.port) as client:
        await client.subscribe("$SYS/broker/version")
        async for message in client.messages:
            return str(message.payload.decode() if isinstance(message.payload, bytes) else "")
    return ""
