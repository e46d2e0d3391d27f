"""Real servers for integration tests, each test isolated: its own PostgreSQL database, its own
RabbitMQ exchange and queue names, its own Redis key prefix; all removed afterwards.

A server that does not answer skips its tests with a message naming it, unless
HEALTHFLOW_REQUIRE_SERVICES=1 (CI), where it fails them instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from healthflow import cluster
from healthflow.cluster import free_port_block
from healthflow.composition.roles import cluster_plan
from healthflow.messaging.rabbitmq import RabbitBus
from healthflow.security.redis_ratelimit import RedisRateLimiter
from healthflow.settings import Settings
from healthflow.storage import migrations
from healthflow.storage.engine import Database, open_database
from tests.conftest import SteppingClock, dev_headers

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
        batch_events: int = 100,
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
            batch_events=batch_events,
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


@pytest.fixture
async def redis_limiters(
    redis_prefix: str,
) -> AsyncIterator[Callable[..., RedisRateLimiter]]:
    """Make shared request budgets on the test's Redis prefix (`clock`: none is Redis's own);
    closed afterwards."""
    made: list[RedisRateLimiter] = []

    def make(per_minute: int, clock: Callable[[], float] | None = None) -> RedisRateLimiter:
        limiter = RedisRateLimiter(
            REDIS_URL, per_minute, prefix=redis_prefix, timeout_s=2.0, clock=clock
        )
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()


# --- the multi-process topology (tests/integration/test_topology*.py) ---


@pytest.fixture
def topology_overrides() -> dict[str, Any]:
    """Settings a test module changes for its topology (override this fixture there)."""
    return {}


@pytest.fixture
def topology_settings(
    make_settings: Callable[..., Settings],
    rabbit: Rabbit,
    redis_prefix: str,
    topology_overrides: dict[str, Any],
    request: pytest.FixtureRequest,
) -> Settings:
    patients_db: str = request.getfixturevalue("postgres_url")
    # a second database for analytics: each service owns its store
    analytics_db: str = request.getfixturevalue("second_postgres_url")
    rabbit.groups.extend(["analytics", "vitals"])
    return make_settings(
        **{
            "port": free_port_block(),
            "database_url": patients_db,
            "analytics_url": analytics_db,
            "broker_url": RABBIT_URL,
            "broker_exchange": rabbit.exchange,
            "cache_url": REDIS_URL,
            "cache_prefix": redis_prefix,
            # the live-push stream under the test's prefix too: runs beside each other never mix
            "hub_redis_prefix": f"{redis_prefix}hub",
            "rate_limit_prefix": f"{redis_prefix}ratelimit:",
            "worker_count": 2,
            "service_timeout_s": 2.0,
            "outbox_poll_interval_s": 0.1,
            "dashboard_cache_ttl_s": 0.5,
            "log_level": "warning",
            **topology_overrides,
        }
    )


def start_roles(plan: list[tuple[str, dict[str, str]]]) -> list[cluster.Child]:
    """Start roles of a plan as processes, each once its `/health` answers (ready or not)."""
    return cluster.start(plan, ready_timeout_s=90, say=lambda _: None)


@pytest.fixture
def topology(topology_settings: Settings) -> Iterator[dict[str, cluster.Child]]:
    """The four roles as `healthflow serve --role ...` processes, after `healthflow db upgrade`."""
    plan = cluster_plan(topology_settings)
    upgrade = subprocess.run(
        [sys.executable, "-m", "healthflow", "db", "upgrade"],
        env={**os.environ, **plan[0][1]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    by_role = {c.role: c for c in start_roles(plan)}
    try:
        yield by_role
    finally:
        cluster.stop(list(by_role.values()))


def gateway(topology: dict[str, cluster.Child], settings: Settings) -> httpx.AsyncClient:
    """An admin client of the topology's gateway (development token)."""
    return httpx.AsyncClient(
        base_url=topology["gateway"].url, timeout=10, headers=dev_headers(settings.data_dir)
    )
