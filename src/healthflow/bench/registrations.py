"""Phase `registrations`: patients registered per second through HTTP (each its transaction,
outbox row, audit record and live push), POST → PatientCreated latency on one listening
dashboard, and how long the analytics workers need to count every registration afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import websockets

from healthflow.bench import counters
from healthflow.bench.context import ClientCpu, Context
from healthflow.bench.fleet import PATIENT_BODY
from healthflow.bench.keepalive import ConnectionClosed, KeepAliveConnection
from healthflow.bench.stats import percentiles

EVENTS_PROCESSED = "healthflow_events_processed_total"


class LiveListener:
    """One WebSocket client on `patients` noting when each PatientCreated arrived."""

    def __init__(self, ws_url: str) -> None:
        self._url = ws_url
        self.arrivals: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> LiveListener:
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._ready.wait(), 30)
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
                message = orjson.loads(raw)
                kind = message.get("type")
                if kind == "Subscribed":
                    self._ready.set()
                elif kind == "Ping":
                    await ws.send('{"op":"pong"}')
                elif kind == "PatientCreated":
                    self.arrivals[message["data"]["patient_id"]] = time.monotonic()


async def closed_loop(
    duration_s: float,
    connections: list[KeepAliveConnection],
    one: Callable[[KeepAliveConnection], Awaitable[None]],
) -> int:
    """Run `one` back to back on each connection for `duration_s`; return how many finished."""
    done = 0
    deadline = time.perf_counter() + duration_s

    async def worker(connection: KeepAliveConnection) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await one(connection)
            done += 1

    await asyncio.gather(*(worker(c) for c in connections))
    return done


async def registrations(ctx: Context) -> dict[str, Any]:
    p = ctx.params
    sent: dict[str, float] = {}
    returned: dict[str, float] = {}
    statuses: dict[int, int] = {}
    transport_errors: dict[str, int] = {}
    metrics_before = await ctx.metrics.text()
    window = ctx.server.window()
    cpu = ClientCpu()
    body = orjson.dumps(PATIENT_BODY)
    connections = [
        KeepAliveConnection("127.0.0.1", ctx.server.port, ctx.server.auth)
        for _ in range(p.registration_concurrency)
    ]
    async with LiveListener(ctx.server.ws_url) as live:

        async def register(connection: KeepAliveConnection) -> None:
            started = time.monotonic()
            try:
                response = await connection.post_json("/api/patients", body)
            except (ConnectionClosed, OSError) as exc:
                transport_errors[type(exc).__name__] = (
                    transport_errors.get(type(exc).__name__, 0) + 1
                )
                return
            statuses[response.status] = statuses.get(response.status, 0) + 1
            if response.status != 201:
                return
            patient_id = orjson.loads(response.body)["id"]
            returned[patient_id] = time.monotonic()
            sent[patient_id] = started

        ctx.progress.phase("registrations", p.duration_s)
        started = time.perf_counter()
        ticker = asyncio.create_task(_tick(ctx, returned, started))
        try:
            await closed_loop(p.duration_s, connections, register)
        finally:
            ticker.cancel()
            for connection in connections:
                await connection.close()
        elapsed = time.perf_counter() - started
        load_ended = time.perf_counter()
        ctx.progress.update("waiting for the analytics workers to count every registration")
        counted, caught_up = await _wait_counted(
            ctx, metrics_before, len(returned), p.drain_limit_s
        )
        await asyncio.sleep(0.5)  # the last pushes
    arrived = [pid for pid in returned if pid in live.arrivals]
    # the push leaves right after commit, before the HTTP reply, so it often arrives first:
    # time after the reply is clamped at 0, time from the request is reported beside it
    after_reply = [max(0.0, (live.arrivals[i] - returned[i]) * 1000) for i in arrived]
    from_request = [(live.arrivals[i] - sent[i]) * 1000 for i in arrived]
    count = len(returned)
    return {
        "per_second": round(count / elapsed, 1),
        "count": count,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "transport_errors": transport_errors,
        "concurrency": p.registration_concurrency,
        "push_after_return_ms": percentiles(after_reply),
        "push_after_send_ms": percentiles(from_request),
        "push_missing": count - len(arrived),
        "analytics_counted": counted,
        "analytics_drain_after_load_s": round(caught_up - load_ended, 2) if caught_up else None,
        "server": ctx.server.close_window(window),
        "load_generator": cpu.result(),
    }


async def _tick(ctx: Context, returned: dict[str, float], started: float) -> None:
    while True:
        await asyncio.sleep(1.0)
        elapsed = time.perf_counter() - started
        ctx.progress.update(
            f"{len(returned):,} registered ({len(returned) / elapsed:,.0f}/s)",
            min(elapsed, ctx.params.duration_s),
        )


async def _wait_counted(
    ctx: Context, before: str, expected: int, limit_s: float
) -> tuple[int, float | None]:
    """PatientCreated events the analytics workers handled since `before`, and when all were."""
    labels = {"pool": "analytics", "type": "PatientCreated"}
    base = counters.total(before, EVENTS_PROCESSED, **labels)
    deadline = time.perf_counter() + limit_s
    while True:
        text = await ctx.metrics.text()
        counted = int(counters.total(text, EVENTS_PROCESSED, **labels) - base)
        if counted >= expected:
            return counted, time.perf_counter()
        if time.perf_counter() > deadline:
            return counted, None
        await asyncio.sleep(0.1)
