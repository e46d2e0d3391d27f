"""What every phase gets: the server under test, a client for it, the parameters, progress."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import httpx
import psutil

from healthflow.bench import PHASES
from healthflow.bench.counters import Scraper
from healthflow.bench.fleet import Fleet
from healthflow.bench.keepalive import KeepAlivePool
from healthflow.bench.server import Backend, ServerProcess


@dataclass(frozen=True)
class Params:
    """Every knob of a run; all of them go into the JSON next to the results."""

    backend: str = "embedded"
    topology: str = "all"  # `all`: one process; `split`: every role its own (server backend)
    duration_s: float = 60.0
    clients: int = 1000  # WebSocket clients in the latency phase
    rate: float | None = None  # readings/s offered in the vitals phases; None: max
    phases: tuple[str, ...] = PHASES
    devices: int = 1000  # monitors (one patient each) streaming in the vitals phases
    wards: int = 50  # patients and WebSocket clients are spread over these wards
    batch: int = 1000  # readings per HTTP request in the throughput phases
    senders: int = 8  # concurrent HTTP senders in closed loop
    mqtt_batch: int = 1  # readings per MQTT message
    # readings published but not yet processed (closed loop) on a shared broker: below
    # Mosquitto's default queue of 1,000 per subscriber (the run's own broker queues by size and
    # takes the HTTP window)
    mqtt_window: int = 600
    latency_rate: float = 10_000.0  # readings/s during the latency phase
    latency_interval_s: float = 5.0  # each monitor posts its buffered readings this often
    deteriorate: int | None = None  # patients sliding into a high NEWS2 (latency); None: 2 %
    registration_rate: float = 10.0  # registrations/s during the latency phase
    client_procs: int = 2  # processes holding the WebSocket clients
    registration_concurrency: int = 32
    overload_factor: float = 2.0
    seed_events: int = 10_000_000  # analytics events stored before the dashboard phase
    dashboard_requests: int = 1000
    baseline_s: float = 10.0  # length of each raw baseline
    drain_limit_s: float = 600.0  # longest wait for the pipeline to catch up after a phase

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Progress(Protocol):
    """Where a run reports what it is doing (the CLI draws it with Rich)."""

    def phase(self, name: str, total_s: float | None) -> None: ...

    def update(self, detail: str, done_s: float | None = None) -> None: ...

    def note(self, text: str) -> None: ...


@dataclass
class RecordedProgress:
    """A Progress that keeps what it was told (tests, and the JSON's `log`)."""

    lines: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)

    def phase(self, name: str, total_s: float | None) -> None:
        self.phases.append(name)
        self.lines.append(f"phase {name}")

    def update(self, detail: str, done_s: float | None = None) -> None:
        pass

    def note(self, text: str) -> None:
        self.lines.append(text)


@dataclass
class Context:
    params: Params
    backend: Backend
    server: ServerProcess
    http: httpx.AsyncClient
    # the request loads' connections (telemetry): httpx costs ~10 ms of CPU a request under load
    requests: KeepAlivePool
    progress: Progress
    metrics: Scraper  # every server process's /metrics (counters summed over them)
    fleet: Fleet | None = None
    results: dict[str, Any] = field(default_factory=dict)


class ClientCpu:
    """CPU this (load-generating) process used between two moments."""

    def __init__(self) -> None:
        self._proc = psutil.Process(os.getpid())
        times = self._proc.cpu_times()
        self._start = times.user + times.system
        self._wall = time.perf_counter()

    def result(self) -> dict[str, float]:
        times = self._proc.cpu_times()
        cpu = times.user + times.system - self._start
        wall = time.perf_counter() - self._wall
        return {"cpu_s": round(cpu, 2), "cpu_cores": round(cpu / wall, 2) if wall else 0.0}
