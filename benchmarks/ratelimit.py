"""What a shared (Redis) request budget costs, against the in-process one.

Three measurements, each as rounds that alternate the two adapters (memory, Redis, memory, ...)
so drift and other load on the machine hit both alike; medians of the rounds are printed:

- check: one `spend` at a time, over 1,000 keys, budgets too large to refuse (per check).
- concurrent: the same checks from 32 tasks at once (checks per second).
- request: `GET /api/patients?limit=1` through the real app in-process (ASGI, SQLite, admin
  token), its guard holding either in-process or Redis budgets (two checks per request:
  client address and subject).

    .venv/bin/python benchmarks/ratelimit.py
    .venv/bin/python benchmarks/ratelimit.py --redis redis://127.0.0.1:6379/0 --checks 5000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from redis.asyncio import Redis

from healthflow.app import build_app
from healthflow.observability.logs import configure
from healthflow.ports import RequestBudget
from healthflow.security.ratelimit import RateLimiter
from healthflow.security.redis_ratelimit import RedisRateLimiter
from healthflow.settings import Settings

HUGE = 10**9  # never refuses: the benchmark measures the check, not a 429
KEYS = [f"subject:bench-{n}" for n in range(1_000)]
TASKS = 32


async def sequential(budget: RequestBudget, checks: int) -> float:
    """Seconds per check."""
    start = time.perf_counter()
    for n in range(checks):
        await budget.spend(KEYS[n % len(KEYS)])
    return (time.perf_counter() - start) / checks


async def concurrent(budget: RequestBudget, checks: int) -> float:
    """Checks per second from TASKS tasks."""

    async def worker(offset: int) -> None:
        for n in range(offset, checks, TASKS):
            await budget.spend(KEYS[n % len(KEYS)])

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(TASKS)))
    return checks / (time.perf_counter() - start)


async def interleaved(rounds: int, measure: Callable[[str], Awaitable[float]]) -> dict[str, float]:
    results: dict[str, list[float]] = {"memory": [], "redis": []}
    for _ in range(rounds):
        for name in results:
            results[name].append(await measure(name))
    return {name: statistics.median(values) for name, values in results.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--checks", type=int, default=5_000)
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    configure("warning", "json")  # as `serve` at warning: no access line per request
    prefix = f"hf_bench_ratelimit_{uuid.uuid4().hex[:12]}:"
    budgets: dict[str, RequestBudget] = {
        "memory": RateLimiter(HUGE),
        "redis": RedisRateLimiter(args.redis, HUGE, prefix=prefix, timeout_s=1.0),
    }
    try:
        await sequential(budgets["redis"], 200)  # connect and load the script first
        check = await interleaved(args.rounds, lambda name: sequential(budgets[name], args.checks))
        print(f"check, {args.checks:,} sequential, median of {args.rounds} rounds:")
        for name, seconds in check.items():
            print(f"  {name:6} {seconds * 1e6:8.1f} µs per check")
        rate = await interleaved(args.rounds, lambda name: concurrent(budgets[name], args.checks))
        print(f"concurrent, {TASKS} tasks:")
        for name, per_s in rate.items():
            print(f"  {name:6} {per_s:10,.0f} checks/s")
        await requests(args, prefix)
    finally:
        for budget in budgets.values():
            await budget.close()
        client = Redis.from_url(args.redis)
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def requests(args: argparse.Namespace, prefix: str) -> None:
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), log_level="warning")
        app = build_app(settings)
        guard = app.state.guard
        pairs: dict[str, tuple[RequestBudget, RequestBudget]] = {
            "memory": (RateLimiter(HUGE), RateLimiter(HUGE)),
            "redis": tuple(  # type: ignore[dict-item]
                RedisRateLimiter(args.redis, HUGE, prefix=prefix, timeout_s=1.0) for _ in "cs"
            ),
        }
        async with app.router.lifespan_context(app):
            token = app.state.platform.security.dev_tokens.mint(
                "bench", "admin", now=datetime.now(UTC), ttl=timedelta(hours=1)
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://bench",
                headers={"Authorization": f"Bearer {token}"},
            ) as http:

                async def measure(name: str) -> float:
                    guard.per_client, guard.per_subject = pairs[name]
                    start = time.perf_counter()
                    for _ in range(args.requests):
                        response = await http.get("/api/patients", params={"limit": 1})
                        response.raise_for_status()
                    return (time.perf_counter() - start) / args.requests

                await measure("redis")  # warm up both paths
                await measure("memory")
                per_request = await interleaved(args.rounds, measure)
        for pair in pairs.values():
            for budget in pair:
                await budget.close()
    print(f"request, {args.requests:,} sequential GET /api/patients?limit=1:")
    for name, seconds in per_request.items():
        print(f"  {name:6} {seconds * 1e3:8.3f} ms per request")
    extra = per_request["redis"] - per_request["memory"]
    print(f"  Redis adds {extra * 1e3:.3f} ms ({extra / per_request['memory']:.1%})")


if __name__ == "__main__":
    asyncio.run(main())
