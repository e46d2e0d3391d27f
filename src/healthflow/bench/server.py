"""The server under test: a `healthflow serve` subprocess on the embedded default or the servers.

`backend()` prepares what a run needs and removes it afterwards: for `server` a fresh PostgreSQL
database, its own RabbitMQ exchange and queue names, a Redis key prefix; for both, an MQTT topic
prefix and subscriber id on the local Mosquitto. Everything is set through HEALTHFLOW_* settings,
exactly as an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import asyncpg  # type: ignore[import-untyped]
import httpx
import psutil

BackendName = Literal["embedded", "server"]
PG_HOST, PG_PORT = "127.0.0.1", 5432
RABBIT_URL = os.environ.get("HEALTHFLOW_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("HEALTHFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
MQTT_URL = os.environ.get("HEALTHFLOW_BENCH_MQTT_URL", "mqtt://127.0.0.1:1883")
# the bus declares one queue family per consumer group of `--role all`
BUS_GROUPS = ("analytics", "vitals")


@dataclass
class Backend:
    """What the server under test is pointed at, and how the bench reaches the same stores."""

    name: BackendName
    run_id: str
    data_dir: Path
    env: dict[str, str]
    postgres_dsn: str | None = None  # asyncpg DSN of the bench database (server backend)
    mqtt_url: str | None = None  # None: Mosquitto is not reachable, the MQTT phase is skipped

    @property
    def mqtt_prefix(self) -> str:
        return self.env.get("HEALTHFLOW_MQTT_TOPIC_PREFIX", "")

    @property
    def analytics_sqlite(self) -> Path:
        return self.data_dir / "analytics.db"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@contextlib.asynccontextmanager
async def backend(name: BackendName, data_dir: Path) -> AsyncIterator[Backend]:
    """A fresh namespace on every server the run uses, removed afterwards whatever happens."""
    run_id = f"hf_bench_{uuid.uuid4().hex[:10]}"
    env = {"HEALTHFLOW_DATA_DIR": str(data_dir)}
    mqtt_url = MQTT_URL if reachable("127.0.0.1", 1883) else None
    if mqtt_url:
        env |= {
            "HEALTHFLOW_MQTT_URL": mqtt_url,
            "HEALTHFLOW_MQTT_TOPIC_PREFIX": f"{run_id}/",
            "HEALTHFLOW_MQTT_CLIENT_ID": run_id,
        }
    found = Backend(name, run_id, data_dir, env, mqtt_url=mqtt_url)
    try:
        if name == "server":
            await _prepare_servers(found)
        yield found
    finally:
        if name == "server":
            await _remove_servers(found)
        if mqtt_url:
            await _clear_mqtt_session(mqtt_url, run_id)


async def _prepare_servers(found: Backend) -> None:
    for server, host, port in (
        ("PostgreSQL", PG_HOST, PG_PORT),
        ("RabbitMQ", "127.0.0.1", 5672),
        ("Redis", "127.0.0.1", 6379),
    ):
        if not reachable(host, port):
            raise RuntimeError(f"--backend server needs {server} on {host}:{port}")

    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{found.run_id}"')
    finally:
        await admin.close()
    found.postgres_dsn = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{found.run_id}"
    url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{found.run_id}"
    found.env |= {
        # both schemas in one database, as the integration tests run them
        "HEALTHFLOW_DATABASE_URL": url,
        "HEALTHFLOW_ANALYTICS_URL": url,
        "HEALTHFLOW_BROKER_URL": RABBIT_URL,
        "HEALTHFLOW_BROKER_EXCHANGE": found.run_id,
        "HEALTHFLOW_CACHE_URL": REDIS_URL,
        "HEALTHFLOW_CACHE_PREFIX": f"{found.run_id}:",
        "HEALTHFLOW_HUB_REDIS_PREFIX": f"{found.run_id}:hub",
    }
    # the deploy step: `serve` migrates only SQLite by itself
    migrate = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "healthflow",
        "db",
        "upgrade",
        env={**os.environ, **found.env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await migrate.communicate()
    if migrate.returncode != 0:
        raise RuntimeError(f"healthflow db upgrade failed: {err.decode()[-2000:]}")


async def _remove_servers(found: Backend) -> None:
    import aio_pika
    from redis.asyncio import Redis

    from healthflow.clock import SystemClock
    from healthflow.messaging.rabbitmq import RabbitBus

    with contextlib.suppress(Exception):
        admin = await asyncpg.connect(
            host=PG_HOST, port=PG_PORT, user="postgres", database="postgres"
        )
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{found.run_id}" WITH (FORCE)')
        finally:
            await admin.close()
    with contextlib.suppress(Exception):
        names = RabbitBus(
            RABBIT_URL,
            clock=SystemClock(),
            exchange=found.run_id,
            retry_delays_s=_retry_delays(),
            prefetch=1,
        )
        connection = await aio_pika.connect(RABBIT_URL)
        async with connection:
            channel = await connection.channel()
            for group in BUS_GROUPS:
                for queue in names.queue_names(group):
                    await channel.queue_delete(queue)
            await channel.queue_delete(names.dead_letter_queue)
            for exchange in names.exchanges:
                await channel.exchange_delete(exchange)
    with contextlib.suppress(Exception):
        redis = Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in redis.scan_iter(match=f"{found.run_id}:*", count=1000)]
            for start in range(0, len(keys), 1000):
                await redis.delete(*keys[start : start + 1000])
        finally:
            await redis.aclose()


def _retry_delays() -> list[float]:
    from healthflow.settings import Settings

    return list(Settings.model_fields["bus_retry_delays_s"].default)


async def _clear_mqtt_session(url: str, client_id: str) -> None:
    """Connect once with a clean session under the subscriber's id: Mosquitto forgets it."""
    import aiomqtt

    from healthflow.vitals.ingest_mqtt import Broker

    broker = Broker.from_url(url)
    with contextlib.suppress(Exception):
        async with aiomqtt.Client(
            broker.hostname, broker.port, identifier=client_id, clean_session=True, timeout=5
        ):
            pass


@dataclass
class Window:
    """CPU and peak RSS of the server between two moments (one phase)."""

    cpu_start: float
    started: float
    peak_rss_mb: float = 0.0


@dataclass
class ServerProcess:
    """A `healthflow serve` subprocess on a free port, sampled for CPU and RSS."""

    backend: Backend
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    peak_rss_mb: float = 0.0
    rss_mb: float = 0.0
    cpu_seconds: float = 0.0
    token: str = ""
    _windows: list[Window] = field(default_factory=list, repr=False)
    _sampler: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws?access_token={self.token}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def env(self) -> dict[str, str]:
        # a load generator is one subject from one address: the per-caller limits would measure
        # themselves, so the bench lifts them unless told otherwise
        return {
            **os.environ,
            "HEALTHFLOW_LOG_LEVEL": "warning",
            "HEALTHFLOW_RATE_LIMIT_SUBJECT_PER_MINUTE": str(10**9),
            "HEALTHFLOW_RATE_LIMIT_CLIENT_PER_MINUTE": str(10**9),
            **self.backend.env,
            **self.extra_env,
        }

    async def start(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        log = (self.backend.data_dir / f"serve-{self.port}.log").open("ab")
        # Popen returns at once (no wait), and the command is our own interpreter and module
        self.process = subprocess.Popen(  # noqa: ASYNC220, S603
            [sys.executable, "-m", "healthflow", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.url}/health")).status_code == 200:
                        break
                if self.process.poll() is not None:
                    raise RuntimeError(f"healthflow serve exited: see {self.log_tail()}")
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("healthflow serve did not start")
        self.token = admin_token(self.env)
        self._sampler = asyncio.create_task(self._sample(), name="bench-server-sampler")

    def log_tail(self) -> str:
        path = self.backend.data_dir / f"serve-{self.port}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def window(self) -> Window:
        """Start measuring CPU and peak RSS from now (for one phase)."""
        found = Window(self.cpu_seconds, time.perf_counter(), self.rss_mb)
        self._windows.append(found)
        return found

    def close_window(self, window: Window) -> dict[str, float]:
        self._sample_once()
        with contextlib.suppress(ValueError):
            self._windows.remove(window)
        elapsed = time.perf_counter() - window.started
        cpu = self.cpu_seconds - window.cpu_start
        return {
            "peak_rss_mb": round(window.peak_rss_mb, 1),
            "cpu_s": round(cpu, 2),
            "cpu_cores": round(cpu / elapsed, 2) if elapsed > 0 else 0.0,
            "wall_s": round(elapsed, 2),
        }

    def _sample_once(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(self.process.pid)
            self.rss_mb = proc.memory_info().rss / 2**20
            times = proc.cpu_times()
            self.cpu_seconds = times.user + times.system
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb)
            for window in self._windows:
                window.peak_rss_mb = max(window.peak_rss_mb, self.rss_mb)

    async def _sample(self) -> None:
        while True:
            self._sample_once()
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._sampler:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            for _ in range(600):
                if self.process.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                self.process.kill()
                self.process.wait()


def admin_token(env: dict[str, str]) -> str:
    """A development admin token signed with the server's own secret (in its data dir)."""
    from healthflow.app import dev_tokens
    from healthflow.settings import Settings

    overrides = {k: v for k, v in env.items() if k.startswith("HEALTHFLOW_")}
    with _environment(overrides):
        minter = dev_tokens(Settings())  # type: ignore[call-arg]
    if minter is None:
        raise RuntimeError("the bench needs development tokens: unset HEALTHFLOW_AUTH_JWKS_URL")
    return minter.mint("bench", "admin", now=datetime.now(UTC), ttl=timedelta(hours=8))


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
