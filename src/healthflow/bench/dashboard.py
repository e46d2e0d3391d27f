"""Phase `dashboard`: `GET /api/analytics/dashboard` latency with N stored events (10 million in
the full run), first each window uncached (every `days` from 90 down to 2 is a new cache key),
then the steady state a screen refresh sees (`days=7`, served from cache for
HEALTHFLOW_DASHBOARD_CACHE_TTL_S, recomputed when that expires).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from healthflow.bench import seed
from healthflow.bench.context import Context
from healthflow.bench.stats import percentiles

CACHE_TTL_S = 5.0  # HEALTHFLOW_DASHBOARD_CACHE_TTL_S's default


async def dashboard(ctx: Context) -> dict[str, Any]:
    p = ctx.params
    before = await _settled_summary(ctx)
    seeded: dict[str, Any] = {"events": 0}
    if p.seed_events > 0:
        ctx.progress.phase("seeding", None)
        ctx.progress.note(f"seeding {p.seed_events:,} analytics events")

        def tick(made: int) -> None:
            ctx.progress.update(f"{made:,} / {p.seed_events:,} events stored")

        if ctx.backend.postgres_dsn:
            done = await seed.seed_postgres(ctx.backend.postgres_dsn, p.seed_events, progress=tick)
            seeded = done.to_dict()
        else:
            seeded = (
                await asyncio.to_thread(
                    seed.seed_sqlite, ctx.backend.analytics_sqlite, p.seed_events, progress=tick
                )
            ).to_dict()
    seeded_at = time.perf_counter()
    ctx.progress.phase("dashboard", None)
    window = ctx.server.window()
    cold = [await _timed(ctx, days) for days in range(90, 1, -1)]
    warm = [await _timed(ctx, 7) for _ in range(p.dashboard_requests)]
    # the server's live metrics feed reads the one-day summary every second, so one computed
    # while the seeding was under way may still be cached: wait until it cannot be
    await asyncio.sleep(max(0.0, CACHE_TTL_S + 1 - (time.perf_counter() - seeded_at)))
    after = await _summary(ctx)
    return {
        "stored_events": after["events_processed_total"],
        "seeded": seeded,
        # the seeded events show on the dashboard: the counts add up
        "counted_seeded_events": after["events_processed_total"] - before["events_processed_total"],
        "uncached_ms": percentiles(cold),
        "steady_ms": percentiles(warm),
        "server": ctx.server.close_window(window),
    }


async def _timed(ctx: Context, days: int) -> float:
    started = time.perf_counter()
    response = await ctx.http.get("/api/analytics/dashboard", params={"days": days})
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


async def _settled_summary(ctx: Context) -> dict[str, Any]:
    """The summary once the events of earlier phases are all counted (two reads a cache
    lifetime apart agree), so the seeded events can be told apart exactly."""
    summary = await _summary(ctx)
    for _ in range(10):
        await asyncio.sleep(CACHE_TTL_S + 1)
        again = await _summary(ctx)
        if again["events_processed_total"] == summary["events_processed_total"]:
            break
        summary = again
    return summary


async def _summary(ctx: Context) -> dict[str, Any]:
    # one day is a window no timed request asks for, so this read does not warm their cache
    response = await ctx.http.get("/api/analytics/dashboard", params={"days": 1})
    response.raise_for_status()
    summary: dict[str, Any] = response.json()
    return summary
