"""Real servers for integration tests, each test isolated: its own PostgreSQL database, its own
RabbitMQ exchange and queue names, its own Redis key prefix; all removed afterwards.

A server that does not answer skips its tests with a message naming it, unless
HEALTHFLOW_REQUIRE_SERVICES=1 (CI), where it fails them instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import aio_pika
import asyncpg
import pytest
from redis.asyncio import Redis

from healthflow.messaging.rabbitmq import RabbitBus
from healthflow.storage import migrations
from healthflow.storage.engine import Database, open_database
from tests.conftest import SteppingClock

PG_HOST, PG_PORT = "127.0.0.1", 5432
RABBIT_URL = os.environ.get("HEALTHFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("HEALTHFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_server(name: str, host: str, port: int) -> None:
    """Skip (or, under HEALTHFLOW_REQUIRE_SERVICES=1, fail) when a server does not answer."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        message = f"{name} is not reachable on {host}:{port} ({exc})"
    if os.environ.get("HEALTHFLOW_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def unique(kind: str) -> str:
    return f"hf_test_{kind}_{uuid.uuid4().hex[:12]}"


async def _create_database(name: str) -> None:
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def _drop_database(name: str) -> None:
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database with a random name, dropped after the test."""
    require_server("PostgreSQL", PG_HOST, PG_PORT)
    name = unique("db")
    asyncio.run(_create_database(name))
    try:
        yield f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(_drop_database(name))


@pytest.fixture
def second_postgres_url(postgres_url: str) -> Iterator[str]:
    """Another fresh database on the same server, e.g. a second service's own store."""
    name = unique("db")
    asyncio.run(_create_database(name))
    try:
        yield postgres_url.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_drop_database(name))


async def migrated(url: str, *schemas: migrations.Schema) -> Database:
    db = open_database(url)
    for schema in schemas:
        await migrations.upgrade(db, schema)
    return db


@dataclass
class Rabbit:
    """One test's RabbitMQ namespace: every exchange and queue name starts with `exchange`."""

    url: str
    exchange: str
    groups: list[str]

    def bus(
        self,
        *,
        groups: Sequence[str] = (),
        retry_delays_s: Sequence[float] = (0.05, 0.1),
        prefetch: int = 20,
        connection_name: str | None = None,
    ) -> RabbitBus:
        self.groups.extend(groups)
        return RabbitBus(
            self.url,
            clock=SteppingClock(),
            exchange=self.exchange,
            retry_delays_s=retry_delays_s,
            prefetch=prefetch,
            declare_groups=groups,
            connection_name=connection_name or self.exchange,
        )


async def delete_rabbit_namespace(rabbit: Rabbit, retry_count: int = 3) -> None:
    names = RabbitBus(
        rabbit.url,
        clock=SteppingClock(),
        exchange=rabbit.exchange,
        retry_delays_s=[1.0] * retry_count,
        prefetch=1,
    )
    connection = await aio_pika.connect(rabbit.url)
    async with connection:
        for group in set(rabbit.groups):
            for queue in [*names.queue_names(group)]:
                channel = await connection.channel()
                await channel.queue_delete(queue)
                await channel.close()
        channel = await connection.channel()
        await channel.queue_delete(names.dead_letter_queue)
        for exchange in names.exchanges:
            await channel.exchange_delete(exchange)


@pytest.fixture
def rabbit() -> Iterator[Rabbit]:
    """A random exchange/queue prefix on the shared broker, deleted after the test.

    Synchronous so parametrised fixtures can ask for it with getfixturevalue; its clean-up runs
    on a loop of its own after the test's loop has finished.
    """
    require_server("RabbitMQ", "127.0.0.1", 5672)
    namespace = Rabbit(RABBIT_URL, unique("ex"), [])
    try:
        yield namespace
    finally:
        asyncio.run(delete_rabbit_namespace(namespace))


async def delete_redis_prefix(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A random key prefix on the shared Redis, its keys deleted after the test."""
    require_server("Redis", "127.0.0.1", 6379)
    prefix = unique("cache") + ":"
    yield prefix
    asyncio.run(delete_redis_prefix(prefix))
