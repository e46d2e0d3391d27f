"""Phases `vitals-http`, `vitals-mqtt` and `overload`: readings/s from intake to stored-and-scored.

Throughput is readings processed divided by the time from the first request until the server
has processed everything it accepted (its counters, see counters.py): a pipeline that accepts
fast and lags behind is charged for its lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from healthflow.bench import counters
from healthflow.bench.context import ClientCpu, Context
from healthflow.bench.fleet import Fleet, register_fleet
from healthflow.bench.load import HttpLoad, MqttLoad, Tally

# throughput phases stamp readings this far back (see HttpLoad.lag_ms)
PAST_MS = 10 * 60 * 1000


async def ensure_fleet(ctx: Context) -> Fleet:
    if ctx.fleet is None:
        p = ctx.params
        ctx.progress.note(f"registering {p.devices} patients with one monitor each")
        ctx.fleet = await register_fleet(
            ctx.http, devices=p.devices, wards=p.wards, run_id=ctx.backend.run_id
        )
    return ctx.fleet


async def _ticker(
    ctx: Context,
    before: counters.Counters,
    tally: Tally,
    started: float,
    total_s: float,
    samples: list[tuple[float, float]],
) -> None:
    while True:
        await asyncio.sleep(1.0)
        with contextlib.suppress(Exception):
            delta = (await counters.read(ctx.metrics)).minus(before)
            elapsed = time.perf_counter() - started
            samples.append((elapsed, delta.processed))
            ctx.progress.update(
                f"accepted {int(delta.accepted_total()):,}, processed {int(delta.processed):,}, "
                f"pushed back {tally.pushed_back:,}",
                min(elapsed, total_s),
            )


async def _measure(
    ctx: Context,
    name: str,
    tally: Tally,
    drive: Callable[[], Awaitable[float]],
    *,
    handed_over: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Run the load, then wait for the pipeline to catch up; the shared shape of a result."""
    p = ctx.params
    before = await counters.read(ctx.metrics)
    window = ctx.server.window()
    cpu = ClientCpu()
    ctx.progress.phase(name, p.duration_s)
    started = time.perf_counter()
    samples: list[tuple[float, float]] = [(0.0, 0.0)]
    ticker = asyncio.create_task(_ticker(ctx, before, tally, started, p.duration_s, samples))
    try:
        load_s = await drive()
        load_ended = time.perf_counter()
        ctx.progress.update("load over; waiting for the pipeline to process what it accepted")
        drain = await counters.wait_until_processed(
            ctx.metrics,
            before,
            started=started,
            load_ended=load_ended,
            limit_s=p.drain_limit_s,
            handed_over=handed_over() if handed_over else None,
        )
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
    client_cpu = cpu.result()
    server = ctx.server.close_window(window)
    batches = (await counters.read(ctx.metrics)).minus(before).mean_batches()
    processed = int(drain.processed)
    caught_up = drain.caught_up_after_s
    # MQTT: what the broker acknowledged to the devices is what must come out processed
    owed = int(handed_over()) if handed_over else int(drain.accepted)
    return {
        "load_s": round(load_s, 2),
        "offered": tally.to_dict(),
        "accepted": int(drain.accepted),
        "accepted_by_client": tally.readings_accepted,
        "processed": processed,
        "all_accepted_processed": processed == owed,
        "unprocessed": owed - processed,
        "caught_up_after_s": caught_up,
        "drain_after_load_s": drain.drain_s,
        "readings_per_s": round(processed / caught_up, 1) if caught_up else None,
        "per_second_while_busy": per_second(samples, processed),
        "accepted_per_s": round(drain.accepted / load_s, 1) if load_s else None,
        "server": server,
        "load_generator": client_cpu,
        # what each stage's fixed costs were shared by: MQTT messages stored together,
        # requests or messages per intake transaction, readings per vitals worker batch
        "mean_batch": batches,
    }


def per_second(samples: list[tuple[float, float]], total: float) -> dict[str, float | int]:
    """Processed readings per second, second by second, until everything was processed: the
    median is steadier than the mean on a machine shared with other work."""
    rates = []
    for (t0, n0), (t1, n1) in itertools.pairwise(samples):
        if n0 >= total:
            break
        if t1 > t0:
            rates.append((n1 - n0) / (t1 - t0))
    if not rates:
        return {"median": 0.0, "p10": 0.0, "p90": 0.0, "seconds": 0}
    ordered = sorted(rates)
    return {
        "median": round(statistics.median(ordered), 1),
        "p10": round(ordered[int(0.1 * (len(ordered) - 1))], 1),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "seconds": len(ordered),
    }


class ProcessedWatch:
    """The server's processed counter since it was entered, read every 250 ms in the background
    (the closed loops' window: what was sent minus what was processed)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.processed = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ProcessedWatch:
        base = await counters.read(self._ctx.metrics)

        async def watch() -> None:
            while True:
                self.processed = (await counters.read(self._ctx.metrics)).minus(base).processed
                # a scrape of /metrics costs the server a few ms (more with every label seen):
                # at 20 a second the benchmark took a fifth of the CPU of what it measured
                await asyncio.sleep(0.25)

        self._task = asyncio.create_task(watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def http_window(ctx: Context) -> int:
    """Readings the HTTP closed loop keeps unprocessed: 80 % of the server's backlog limit."""
    from healthflow.settings import Settings

    default = Settings.model_fields["telemetry_backlog_limit"].default
    limit = int(ctx.server.env.get("HEALTHFLOW_TELEMETRY_BACKLOG_LIMIT", default))
    return max(ctx.params.batch, int(limit * 0.8))


async def vitals_http(ctx: Context) -> dict[str, Any]:
    p = ctx.params
    fleet = await ensure_fleet(ctx)
    load = HttpLoad(ctx.requests, fleet, p.batch, lag_ms=PAST_MS)
    window = http_window(ctx)

    async def drive() -> float:
        if p.rate is not None:
            return await load.at_rate(
                readings_per_s=p.rate, duration_s=p.duration_s, max_in_flight=p.senders * 8
            )
        async with ProcessedWatch(ctx) as watch:
            return await load.closed_loop(
                duration_s=p.duration_s,
                senders=p.senders,
                window=window,
                processed=lambda: watch.processed,
            )

    result = await _measure(ctx, "vitals-http", load.tally, drive)
    result["mode"] = (
        f"max (closed loop, at most {window:,} readings unprocessed)"
        if p.rate is None
        else f"{p.rate:g} readings/s offered"
    )
    result["batch"] = p.batch
    return result


async def vitals_mqtt(ctx: Context) -> dict[str, Any]:
    p = ctx.params
    if ctx.backend.mqtt_url is None:
        ctx.progress.note("vitals-mqtt skipped: no mosquitto binary and no broker on 1883")
        return {"skipped": "no mosquitto binary and no MQTT broker on 127.0.0.1:1883"}
    fleet = await ensure_fleet(ctx)
    # a broker that queues by size holds whatever the closed loop keeps unprocessed: the same
    # window as HTTP; one with Mosquitto's default would drop beyond 1,000 queued messages
    window = http_window(ctx) if ctx.backend.mqtt_queue_by_size else p.mqtt_window
    load = MqttLoad(
        fleet, ctx.backend.mqtt_url, ctx.backend.mqtt_prefix, p.mqtt_batch, lag_ms=PAST_MS
    )

    async def drive() -> float:
        async with ProcessedWatch(ctx) as watch:
            return await load.run(
                duration_s=p.duration_s,
                readings_per_s=p.rate,
                window=window,
                processed=lambda: watch.processed,
            )

    result = await _measure(
        ctx, "vitals-mqtt", load.tally, drive, handed_over=lambda: load.tally.readings_accepted
    )
    result["mode"] = (
        f"max (closed loop, at most {window:,} readings unprocessed)"
        if p.rate is None
        else f"{p.rate:g} readings/s offered"
    )
    result["batch"] = p.mqtt_batch
    result["broker"] = "own, deploy/mosquitto.conf" if ctx.backend.mqtt_queue_by_size else "shared"
    return result


async def overload(ctx: Context, sustainable_per_s: float) -> dict[str, Any]:
    """Offer `overload_factor` times the sustainable HTTP rate for the duration, open loop.

    The senders ignore Retry-After (the worst case: a fleet of monitors that keep sending), so
    the offered load stays at the target; what matters is that the server pushes back instead of
    growing, and that everything it did accept is processed.
    """
    p = ctx.params
    fleet = await ensure_fleet(ctx)
    load = HttpLoad(ctx.requests, fleet, p.batch, lag_ms=PAST_MS)
    offered = sustainable_per_s * p.overload_factor

    async def drive() -> float:
        return await load.at_rate(
            readings_per_s=offered, duration_s=p.duration_s, max_in_flight=p.senders * 16
        )

    result = await _measure(ctx, "overload", load.tally, drive)
    tally = load.tally
    result["sustainable_per_s"] = round(sustainable_per_s, 1)
    result["offered_per_s"] = round(offered, 1)
    result["batch"] = p.batch
    result["pushback"] = {
        "requests": tally.pushed_back,
        "with_retry_after": tally.pushed_back_with_retry_after,
        "retry_after_values": dict(tally.retry_after_values),
        "share_of_requests": round(tally.pushed_back / tally.requests, 4) if tally.requests else 0,
        "exists": tally.pushed_back > 0,
    }
    return result
