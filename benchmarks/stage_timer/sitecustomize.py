"""Where a reading waits inside the server under test: wall time per pipeline stage.

Python imports `sitecustomize` at start-up from the path, so putting this folder on
PYTHONPATH (the bench passes its environment to `healthflow serve`) wraps, in the `--role all`
server only, the coroutines a reading passes through with a timer, and measures how late the
event loop runs a callback another thread scheduled (what a SQLite statement's result waits):

    HEALTHFLOW_STAGE_TIMER=stages.txt PYTHONPATH=benchmarks/stage_timer \\
        .venv/bin/healthflow bench --duration 20 --seed-events 0 --phases latency \\
        --latency-rate 1500

Every 3 s it writes mean / p50 / p90 / p99 per stage to `stages.txt`, and every stage that took
longer than 50 ms, with its start (seconds since start-up), to `stages.txt.slow`. A probe, not
a metric: the timers cost a few per cent, so compare stages within one run, not runs with and
without it. `engine.begin wait` is the wait for a connection (for a SQLite writer: for the one
writer), `body` the transaction, `commit` its commit.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

OUT = os.environ.get("HEALTHFLOW_STAGE_TIMER")
SLOW_S = 0.05
_stats: dict[str, list[float]] = collections.defaultdict(list)
_slow: list[tuple[float, float, str]] = []
_T0 = time.perf_counter()
_lag: list[object] = []


def _note(key: str, started: float, took: float) -> None:
    _stats[key].append(took)
    if took > SLOW_S:
        _slow.append((started - _T0, took, key))


def _watch_loop() -> None:
    """Once, from the loop: a thread asks it every 10 ms to run a callback, and notes how late."""
    if _lag:
        return
    import asyncio

    loop = asyncio.get_running_loop()
    _lag.append(loop)

    def ran(asked: float) -> None:
        _note("loop: callback from a thread runs after", asked, time.perf_counter() - asked)

    def ask() -> None:
        while not loop.is_closed():
            time.sleep(0.01)
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(ran, time.perf_counter())

    threading.Thread(target=ask, daemon=True).start()


def _timed(cls: type, name: str) -> None:
    original = getattr(cls, name)

    @functools.wraps(original)
    async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        _watch_loop()
        started = time.perf_counter()
        try:
            return await original(self, *args, **kwargs)
        finally:
            label = getattr(self, "name", None)
            key = f"{cls.__name__}.{name}" + (f"[{label}]" if isinstance(label, str) else "")
            _note(key, started, time.perf_counter() - started)

    setattr(cls, name, timed)


def _dump() -> None:
    if not _stats or OUT is None:
        return
    lines = []
    for key, values in sorted(_stats.items()):
        ordered, n = sorted(values), len(values)
        ms = [1e3 * ordered[min(n - 1, int(n * q))] for q in (0.5, 0.9, 0.99)]
        lines.append(
            f"{key:52s} n={n:7d} mean={1e3 * sum(ordered) / n:8.2f} "
            f"p50={ms[0]:8.2f} p90={ms[1]:8.2f} p99={ms[2]:8.2f} ms\n"
        )
    with open(OUT, "w") as out:
        out.writelines(lines)
    with open(OUT + ".slow", "w") as out:
        for at, took, key in sorted(_slow):
            out.write(f"{at:10.3f} {1e3 * took:8.1f} ms {key}\n")


def _install() -> None:
    from sqlalchemy.ext.asyncio import engine

    from healthflow.messaging.memory import MemoryBus
    from healthflow.messaging.outbox import OutboxRelay
    from healthflow.messaging.worker import WorkerPool
    from healthflow.storage.group_commit import GroupCommit
    from healthflow.vitals.store import SqlVitalsStore

    for cls, name in (
        (GroupCommit, "_commit"),
        (OutboxRelay, "_deliver"),
        (MemoryBus, "publish"),
        (WorkerPool, "_handle_batch"),
        (SqlVitalsStore, "_record"),
        (SqlVitalsStore, "_decide_all"),
    ):
        _timed(cls, name)
    begin = engine.AsyncEngine.begin

    @contextlib.asynccontextmanager
    async def timed_begin(self: engine.AsyncEngine) -> AsyncIterator[Any]:
        database = str(self.url).rsplit("/", 1)[-1]
        asked = time.perf_counter()
        async with begin(self) as conn:
            got = time.perf_counter()
            _note(f"engine.begin wait {database}", asked, got - asked)
            try:
                yield conn
            finally:
                done = time.perf_counter()
                _note(f"engine.begin body {database}", got, done - got)
        _note(f"engine.begin commit {database}", done, time.perf_counter() - done)

    engine.AsyncEngine.begin = timed_begin  # type: ignore[method-assign,assignment]

    def dump_every_3_s() -> None:
        while True:
            time.sleep(3)
            _dump()

    threading.Thread(target=dump_every_3_s, daemon=True).start()


if OUT and os.environ.get("HEALTHFLOW_ROLE") == "all":
    _install()
