"""The end-to-end benchmark: a real `healthflow serve` process, real HTTP and WebSocket clients.

Each phase measures one promise and returns plain numbers; `run` puts them together with the
machine, versions and command so a figure can be reproduced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import websockets

from healthflow import __version__

Progress = Callable[[str], None]

PATIENT = {
    "given_name": "Bench",
    "family_name": "Mark",
    "birth_date": "1970-01-01",
    "sex": "unknown",
    "ward": "BENCH",
}


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    if not samples_ms:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "n": 0}
    ordered = sorted(samples_ms)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "n": len(ordered)}


@dataclass
class ServerProcess:
    """A `healthflow serve` subprocess on a free port, sampled for CPU and RSS."""

    env: dict[str, str]
    data_dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0
    token: str = ""
    _sampler: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def start(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        # a load generator is one subject from one address: the per-caller limits would measure
        # themselves, so the bench lifts them unless told otherwise
        env = {
            **os.environ,
            "HEALTHFLOW_LOG_LEVEL": "warning",
            "HEALTHFLOW_RATE_LIMIT_SUBJECT_PER_MINUTE": str(10**9),
            "HEALTHFLOW_RATE_LIMIT_CLIENT_PER_MINUTE": str(10**9),
            **self.env,
        }
        # Popen returns at once (no wait), and the command is our own interpreter and module
        self.process = subprocess.Popen(  # noqa: ASYNC220, S603
            [
                sys.executable,
                "-m",
                "healthflow",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.url}/health")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("healthflow serve did not start")
        self.token = _admin_token(self.data_dir, env)
        self._sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        assert self.process is not None
        proc = psutil.Process(self.process.pid)
        while True:
            with contextlib.suppress(psutil.Error):
                self.peak_rss_mb = max(self.peak_rss_mb, proc.memory_info().rss / 2**20)
                times = proc.cpu_times()
                self.cpu_seconds = times.user + times.system
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self._sampler:
            self._sampler.cancel()
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _admin_token(data_dir: Path, env: dict[str, str]) -> str:
    """A development admin token signed with the server's own secret (in its data dir)."""
    from datetime import UTC, datetime, timedelta

    from healthflow.app import dev_tokens
    from healthflow.settings import Settings

    overrides = {k: v for k, v in env.items() if k.startswith("HEALTHFLOW_AUTH_")}
    with _environment(overrides):
        minter = dev_tokens(Settings(data_dir=data_dir))  # type: ignore[call-arg]
    if minter is None:
        raise RuntimeError("the bench needs development tokens: unset HEALTHFLOW_AUTH_JWKS_URL")
    return minter.mint("bench", "admin", now=datetime.now(UTC), ttl=timedelta(hours=4))


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


class LiveListener:
    """A WebSocket client that notes when each patient's PatientCreated arrived."""

    def __init__(self, url: str, token: str) -> None:
        self._url = url.replace("http", "ws", 1) + f"/ws?access_token={token}"
        self.arrivals: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> LiveListener:
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        async with websockets.connect(self._url, max_queue=None) as ws:
            await ws.send(orjson.dumps({"op": "subscribe", "topics": ["patients"]}).decode())
            async for raw in ws:
                if orjson.loads(raw).get("type") == "Subscribed":
                    break
            self._ready.set()
            async for raw in ws:
                message = orjson.loads(raw)
                if message.get("type") == "PatientCreated":
                    self.arrivals[message["data"]["patient_id"]] = time.perf_counter()


async def _closed_loop(
    duration_s: float, concurrency: int, one: Callable[[], Awaitable[None]]
) -> int:
    """Run `one` back to back on `concurrency` tasks for `duration_s`; return how many finished."""
    done = 0
    deadline = time.perf_counter() + duration_s

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await one()
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def registrations(
    server: ServerProcess, *, duration_s: float, concurrency: int, progress: Progress
) -> dict[str, Any]:
    """Registrations/s through HTTP, and POST-returned → PatientCreated-received latency."""
    sent: dict[str, float] = {}
    returned: dict[str, float] = {}
    errors = 0
    limits = httpx.Limits(max_connections=concurrency)
    async with (
        httpx.AsyncClient(
            base_url=server.url, limits=limits, timeout=30, headers=server.auth
        ) as http,
        LiveListener(server.url, server.token) as live,
    ):

        async def register() -> None:
            nonlocal errors
            started = time.perf_counter()
            response = await http.post("/api/patients", json=PATIENT)
            if response.status_code != 201:
                errors += 1
                return
            patient_id = response.json()["id"]
            returned[patient_id] = time.perf_counter()
            sent[patient_id] = started

        progress(f"registrations: {concurrency} clients for {duration_s:.0f} s")
        started = time.perf_counter()
        count = await _closed_loop(duration_s, concurrency, register)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(1.0)  # let the last pushes arrive
    arrived = [pid for pid in returned if pid in live.arrivals]
    # the push leaves right after commit, before the HTTP reply, so it often arrives first:
    # time after the reply is clamped at 0, time from the request is reported beside it
    after_reply = [max(0.0, (live.arrivals[p] - returned[p]) * 1000) for p in arrived]
    from_request = [(live.arrivals[p] - sent[p]) * 1000 for p in arrived]
    return {
        "per_second": round((count - errors) / elapsed, 1),
        "count": count - errors,
        "errors": errors,
        "push_latency_ms": percentiles(after_reply),
        "push_from_request_ms": percentiles(from_request),
        "push_missing": len(returned) - len(arrived),
    }


async def pipeline_drain(
    server: ServerProcess, expected: int, progress: Progress
) -> dict[str, Any]:
    """How long the workers need until the dashboard counts every registered patient."""
    progress("waiting for the pipeline to process every event")
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=server.auth) as http:
        while True:
            summary = (await http.get("/api/analytics/dashboard", params={"days": 1})).json()
            if summary["patients_total"] >= expected:
                break
            if time.perf_counter() - started > 300:
                break
            await asyncio.sleep(0.2)
    return {
        "drain_s": round(time.perf_counter() - started, 2),
        "counted": summary["patients_total"],
        "expected": expected,
    }


async def dashboard(server: ServerProcess, *, requests: int, progress: Progress) -> dict[str, Any]:
    """Dashboard latency, the cached path a screen refresh takes."""
    progress(f"dashboard: {requests} requests")
    samples: list[float] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=server.auth) as http:
        for _ in range(requests):
            started = time.perf_counter()
            response = await http.get("/api/analytics/dashboard", params={"days": 7})
            samples.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return {"latency_ms": percentiles(samples)}


def bare_sqlite_inserts(rows: int, synchronous: str) -> dict[str, Any]:
    """Baseline: the same number of single-row transactions straight through sqlite3."""
    with tempfile.TemporaryDirectory() as folder:
        db = sqlite3.connect(Path(folder) / "bare.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
        payload = orjson.dumps(PATIENT).decode()
        started = time.perf_counter()
        for _ in range(rows):
            db.execute("BEGIN")
            db.execute("INSERT INTO t (payload) VALUES (?)", (payload,))
            db.execute("INSERT INTO t (payload) VALUES (?)", (payload,))
            db.execute("COMMIT")
        elapsed = time.perf_counter() - started
        db.close()
    return {"transactions_per_second": round(rows / elapsed, 1)}


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "healthflow": __version__,
    }


@contextlib.contextmanager
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="healthflow-bench-") as folder:
        yield Path(folder)


async def run(
    *,
    duration_s: float,
    concurrency: int,
    dashboard_requests: int,
    env: dict[str, str],
    progress: Progress,
) -> dict[str, Any]:
    """Every phase against one fresh server; returns the full result."""
    with data_dir() as folder:
        server = ServerProcess(env=env, data_dir=folder)
        await server.start()
        try:
            result: dict[str, Any] = {"machine": machine(), "env": env}
            result["registrations"] = await registrations(
                server, duration_s=duration_s, concurrency=concurrency, progress=progress
            )
            result["pipeline"] = await pipeline_drain(
                server, result["registrations"]["count"], progress
            )
            result["dashboard"] = await dashboard(
                server, requests=dashboard_requests, progress=progress
            )
            result["server"] = {
                "peak_rss_mb": round(server.peak_rss_mb, 1),
                "cpu_seconds": round(server.cpu_seconds, 2),
            }
        finally:
            server.stop()
    progress("baseline: bare sqlite3 transactions")
    synchronous = env.get("HEALTHFLOW_SQLITE_SYNCHRONOUS", "FULL")
    result["baseline"] = {"sqlite": bare_sqlite_inserts(2000, synchronous)}
    reg = result["registrations"]["per_second"]
    bare = result["baseline"]["sqlite"]["transactions_per_second"]
    result["ratios"] = {"registration_vs_bare_sqlite": round(bare / reg, 1) if reg else None}
    return result
