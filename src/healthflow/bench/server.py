"""The server under test: `healthflow serve` processes on the embedded default or the servers.

`backend()` prepares what a run needs and removes it afterwards: for `server` a fresh PostgreSQL
database (two for the split topology: each service owns its store), its own RabbitMQ exchange
and queue names, a Redis key prefix; for both, an MQTT topic prefix and subscriber id on a
Mosquitto of the run's own, configured as `deploy/mosquitto.conf` ships it (the shared one on
127.0.0.1:1883 when the `mosquitto` binary is missing, or the broker HEALTHFLOW_BENCH_MQTT_URL
names). Everything is set through HEALTHFLOW_* settings, exactly as an operator would.

`ServerProcess` runs either one `--role all` process or every role of `cluster_plan` as its own
process (`--topology split`), started and stopped by the same supervisor as `healthflow cluster`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import asyncpg  # type: ignore[import-untyped]
import psutil

from healthflow import cluster

if TYPE_CHECKING:
    from healthflow.settings import Settings

BackendName = Literal["embedded", "server"]
Topology = Literal["all", "split"]
PG_HOST, PG_PORT = "127.0.0.1", 5432
RABBIT_URL = os.environ.get("HEALTHFLOW_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("HEALTHFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
MQTT_URL = os.environ.get("HEALTHFLOW_BENCH_MQTT_URL")  # a broker to use instead of our own
SHARED_MQTT_URL = "mqtt://127.0.0.1:1883"
DEPLOY_MOSQUITTO_CONF = Path(__file__).resolve().parents[3] / "deploy" / "mosquitto.conf"
# the bus declares one queue family per consumer group of `--role all`
BUS_GROUPS = ("analytics", "vitals")


@dataclass
class Backend:
    """What the server under test is pointed at, and how the bench reaches the same stores."""

    name: BackendName
    run_id: str
    data_dir: Path
    env: dict[str, str]
    # asyncpg DSN of the database holding the analytics store (vitals rows, seeded events)
    postgres_dsn: str | None = None
    mqtt_url: str | None = None  # None: Mosquitto is not reachable, the MQTT phase is skipped
    # the run's own broker queues by size (deploy/mosquitto.conf); another may drop what it
    # queues for a subscriber beyond Mosquitto's default of 1,000 messages
    mqtt_queue_by_size: bool = False
    databases: list[str] = field(default_factory=list)  # created for the run, dropped after

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
async def backend(
    name: BackendName, data_dir: Path, topology: Topology = "all"
) -> AsyncIterator[Backend]:
    """A fresh namespace on every server the run uses, removed afterwards whatever happens."""
    run_id = f"hf_bench_{uuid.uuid4().hex[:10]}"
    env = {"HEALTHFLOW_DATA_DIR": str(data_dir)}
    async with contextlib.AsyncExitStack() as stack:
        # a broker of the run's own where it can be started and configured as deployments are
        own_possible = MQTT_URL is None and DEPLOY_MOSQUITTO_CONF.exists()
        binary = mosquitto_binary() if own_possible else None
        own = binary is not None
        if binary is not None:
            mqtt_url: str | None = await stack.enter_async_context(own_mosquitto(binary, data_dir))
        else:
            mqtt_url = MQTT_URL or (SHARED_MQTT_URL if reachable("127.0.0.1", 1883) else None)
        if mqtt_url:
            env |= {
                "HEALTHFLOW_MQTT_URL": mqtt_url,
                "HEALTHFLOW_MQTT_TOPIC_PREFIX": f"{run_id}/",
                "HEALTHFLOW_MQTT_CLIENT_ID": run_id,
            }
        found = Backend(name, run_id, data_dir, env, mqtt_url=mqtt_url, mqtt_queue_by_size=own)
        try:
            if name == "server":
                await _prepare_servers(found, separate_stores=topology == "split")
            yield found
        finally:
            if name == "server":
                await _remove_servers(found)
            if mqtt_url and not own:
                await _clear_mqtt_session(mqtt_url, run_id)


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def mosquitto_conf(template: str, port: int, folder: Path) -> str:
    """deploy/mosquitto.conf with the run's own listener and persistence folder."""
    lines = []
    for line in template.splitlines():
        if line.startswith("listener "):
            line = f"listener {port} 127.0.0.1"
        elif line.startswith("persistence_location "):
            line = f"persistence_location {folder}/"
        lines.append(line)
    return "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def own_mosquitto(binary: str, data_dir: Path, *, extra_conf: str = "") -> AsyncIterator[str]:
    """A Mosquitto for this run alone, configured as deploy/mosquitto.conf (plus `extra_conf`,
    for the listener: TLS files, say); its URL (mqtt://, whatever the listener speaks).

    The shared broker keeps Mosquitto's defaults, which drop what is queued for a subscriber
    beyond 1,000 messages: the MQTT phase had to keep its closed loop under that, and measured
    the window more than the pipeline (BENCHMARKS.md).
    """
    folder = data_dir / "mosquitto"
    folder.mkdir(parents=True, exist_ok=True)
    port = cluster.free_port_block(1)
    conf = folder / "mosquitto.conf"
    conf.write_text(mosquitto_conf(DEPLOY_MOSQUITTO_CONF.read_text(), port, folder) + extra_conf)
    log = (folder / "mosquitto.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        binary, "-c", str(conf), stdout=log, stderr=asyncio.subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while not reachable("127.0.0.1", port):
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start; see {folder / 'mosquitto.log'}")
            await asyncio.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
        log.close()


async def _prepare_servers(found: Backend, *, separate_stores: bool) -> None:
    for server, host, port in (
        ("PostgreSQL", PG_HOST, PG_PORT),
        ("RabbitMQ", "127.0.0.1", 5672),
        ("Redis", "127.0.0.1", 6379),
    ):
        if not reachable(host, port):
            raise RuntimeError(f"--backend server needs {server} on {host}:{port}")

    # one database for both schemas under `--role all`, as the integration tests run them; the
    # split services each their own, as the topology tests and a real deployment do
    found.databases = [found.run_id]
    if separate_stores:
        found.databases.append(f"{found.run_id}_analytics")
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="postgres")
    try:
        for database in found.databases:
            await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    patients_db, analytics_db = found.databases[0], found.databases[-1]
    found.postgres_dsn = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{analytics_db}"
    server = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}"
    found.env |= {
        "HEALTHFLOW_DATABASE_URL": f"{server}/{patients_db}",
        "HEALTHFLOW_ANALYTICS_URL": f"{server}/{analytics_db}",
        "HEALTHFLOW_BROKER_URL": RABBIT_URL,
        "HEALTHFLOW_BROKER_EXCHANGE": found.run_id,
        "HEALTHFLOW_CACHE_URL": REDIS_URL,
        "HEALTHFLOW_CACHE_PREFIX": f"{found.run_id}:",
        "HEALTHFLOW_HUB_REDIS_PREFIX": f"{found.run_id}:hub",
        "HEALTHFLOW_RATE_LIMIT_PREFIX": f"{found.run_id}:ratelimit:",
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
            for database in found.databases:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
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
    """CPU and peak RSS of the server's processes between two moments (one phase)."""

    cpu_start: dict[str, float]  # by role
    started: float
    peak_rss_mb: float = 0.0  # the processes' RSS summed at one moment, its peak
    role_peaks_mb: dict[str, float] = field(default_factory=dict)


@dataclass
class RoleProcess:
    """One process of the server under test, sampled for CPU and RSS."""

    child: cluster.Child
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0
    _proc: psutil.Process | None = field(default=None, repr=False)

    @property
    def role(self) -> str:
        return self.child.role

    def sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            if self._proc is None:
                self._proc = psutil.Process(self.child.process.pid)
            self.rss_mb = self._proc.memory_info().rss / 2**20
            times = self._proc.cpu_times()
            self.cpu_seconds = times.user + times.system
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb)


@dataclass
class ServerProcess:
    """The server under test: one `--role all` process, or every role of the cluster plan.

    Clients reach it where a deployment's would: `url`/`port` are the `all` process's or the
    gateway's; `metrics_urls` lists every process, whose counters a reader sums. CPU and RSS are
    the sum over the processes, with per-role figures beside them when there are several.
    """

    backend: Backend
    extra_env: dict[str, str] = field(default_factory=dict)
    topology: Topology = "all"
    port: int = 0
    token: str = ""
    processes: list[RoleProcess] = field(default_factory=list)
    peak_rss_mb: float = 0.0  # summed over the processes at one moment
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
    def metrics_urls(self) -> tuple[str, ...]:
        return tuple(p.child.url for p in self.processes)

    @property
    def rss_mb(self) -> float:
        return sum(p.rss_mb for p in self.processes)

    @property
    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds for p in self.processes)

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

    def plan(self) -> list[tuple[str, dict[str, str]]]:
        """Each process's role and environment, in start order (the entry point last)."""
        if self.topology == "all":
            port = cluster.free_port_block(1)
            entry = {"HEALTHFLOW_ROLE": "all", "HEALTHFLOW_HOST": "127.0.0.1"}
            return [("all", {**self.env, **entry, cluster.ROLE_PORT_ENV: str(port)})]
        from healthflow.composition.roles import cluster_plan

        settings = _settings(self.env, host="127.0.0.1", port=cluster.free_port_block(4))
        return cluster_plan(settings)

    async def start(self) -> None:
        plan = self.plan()
        starting = asyncio.ensure_future(
            asyncio.to_thread(
                cluster.start,
                plan,
                ready_timeout_s=120.0,
                say=lambda _: None,
                ready_path="/health/ready",
                logs=self.backend.data_dir,
            )
        )
        try:
            children = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # the thread goes on starting them whatever this task does: once it has, stop them
            with contextlib.suppress(Exception):
                await asyncio.to_thread(cluster.stop, await starting, 60.0)
            raise
        except (RuntimeError, TimeoutError) as exc:
            tails = (self._tail(role, int(env[cluster.ROLE_PORT_ENV])) for role, env in plan)
            raise RuntimeError(f"healthflow serve did not start: {exc}\n{''.join(tails)}") from exc
        self.processes = [RoleProcess(child) for child in children]
        self.port = children[-1].port
        self.token = admin_token(self.env)
        self._sampler = asyncio.create_task(self._sample(), name="bench-server-sampler")

    def log_tail(self) -> str:
        return "".join(self._tail(p.role, p.child.port) for p in self.processes)[-3000:]

    def _tail(self, role: str, port: int) -> str:
        path = cluster.log_path(self.backend.data_dir, role, port)
        text = path.read_text(errors="replace")[-3000:] if path.exists() else ""
        return f"[{role}]\n{text}" if text and self.topology != "all" else text

    def window(self) -> Window:
        """Start measuring CPU and peak RSS from now (for one phase)."""
        found = Window(
            {p.role: p.cpu_seconds for p in self.processes},
            time.perf_counter(),
            self.rss_mb,
            {p.role: p.rss_mb for p in self.processes},
        )
        self._windows.append(found)
        return found

    def close_window(self, window: Window) -> dict[str, Any]:
        self._sample_once()
        with contextlib.suppress(ValueError):
            self._windows.remove(window)
        elapsed = time.perf_counter() - window.started

        def figures(cpu: float, peak_mb: float) -> dict[str, float]:
            return {
                "peak_rss_mb": round(peak_mb, 1),
                "cpu_s": round(cpu, 2),
                "cpu_cores": round(cpu / elapsed, 2) if elapsed > 0 else 0.0,
            }

        cpu = {p.role: p.cpu_seconds - window.cpu_start.get(p.role, 0.0) for p in self.processes}
        found: dict[str, Any] = figures(sum(cpu.values()), window.peak_rss_mb)
        found["wall_s"] = round(elapsed, 2)
        if len(self.processes) > 1:
            found["roles"] = {
                role: figures(used, window.role_peaks_mb.get(role, 0.0))
                for role, used in cpu.items()
            }
        return found

    def by_role(self) -> dict[str, dict[str, float]]:
        """Peak RSS and CPU seconds of each process over the whole run."""
        return {
            p.role: {"peak_rss_mb": round(p.peak_rss_mb, 1), "cpu_s": round(p.cpu_seconds, 1)}
            for p in self.processes
        }

    def _sample_once(self) -> None:
        for process in self.processes:
            process.sample()
        total = self.rss_mb
        self.peak_rss_mb = max(self.peak_rss_mb, total)
        for window in self._windows:
            window.peak_rss_mb = max(window.peak_rss_mb, total)
            for process in self.processes:
                peak = window.role_peaks_mb.get(process.role, 0.0)
                window.role_peaks_mb[process.role] = max(peak, process.rss_mb)

    async def _sample(self) -> None:
        while True:
            self._sample_once()
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._sampler:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        children = [p.child for p in self.processes]
        await asyncio.to_thread(cluster.stop, children, 60.0)


def _settings(env: dict[str, str], **overrides: Any) -> Settings:
    """The server's Settings as its processes would read them from `env`."""
    from healthflow.settings import Settings

    with _environment({k: v for k, v in env.items() if k.startswith("HEALTHFLOW_")}):
        return Settings(**overrides)


def admin_token(env: dict[str, str]) -> str:
    """A development admin token signed with the server's own secret (in its data dir)."""
    from healthflow.app import dev_tokens

    minter = dev_tokens(_settings(env))
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
