"""Request budgets shared through the real Redis on 127.0.0.1:6379, and what happens without it.

Two limiter instances stand in for two processes (replicas) of one deployment.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from structlog.testing import capture_logs

from healthflow.app import build_app
from healthflow.composition.adapters import request_budgets
from healthflow.security.ratelimit import RateLimiter, TooManyRequests
from healthflow.security.redis_ratelimit import RedisRateLimiter
from healthflow.settings import Settings
from tests.conftest import eventually, mint_token
from tests.integration.conftest import REDIS_URL

pytestmark = pytest.mark.integration


def fallbacks(reason: str) -> float:
    value = REGISTRY.get_sample_value("healthflow_rate_limit_fallbacks_total", {"reason": reason})
    return value or 0.0


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound by us a moment ago, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def spent(limiter: RedisRateLimiter, key: str, times: int) -> None:
    for _ in range(times):
        await limiter.spend(key)


async def test_two_processes_share_one_budget(
    redis_limiters: Callable[..., RedisRateLimiter],
) -> None:
    first, second = redis_limiters(4), redis_limiters(4)
    await spent(first, "subject:ada", 2)
    await spent(second, "subject:ada", 2)
    for limiter in (first, second):
        with pytest.raises(TooManyRequests):
            await limiter.spend("subject:ada")
    await first.spend("subject:grace")  # another caller's budget is untouched


async def test_the_shared_budget_refills_on_redis_clock_with_a_sensible_wait(
    redis_limiters: Callable[..., RedisRateLimiter],
) -> None:
    first, second = redis_limiters(60), redis_limiters(60)  # one request a second
    await spent(first, "subject:ada", 60)
    with pytest.raises(TooManyRequests) as refused:
        await second.spend("subject:ada")
    assert 0 < refused.value.retry_after_s <= 1.0

    async def refilled() -> bool:
        try:
            await second.spend("subject:ada")
        except TooManyRequests:
            return False
        return True

    await eventually(refilled, timeout=5.0, interval=0.1)
    with pytest.raises(TooManyRequests):
        await first.spend("subject:ada")  # the refilled request was spent for both


async def test_a_bucket_lives_under_the_prefix_and_expires(
    redis_limiters: Callable[..., RedisRateLimiter], redis_prefix: str
) -> None:
    await redis_limiters(120).spend("client:10.0.0.7")
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=redis_prefix + "*")]
        ttl_ms = await client.pttl(redis_prefix + "client:10.0.0.7")
    finally:
        await client.aclose()
    assert keys == [(redis_prefix + "client:10.0.0.7").encode()]
    assert 0 < ttl_ms <= 61_000  # refilled from one spent request in 0.5 s, plus a second


async def test_without_redis_requests_are_decided_in_process_and_counted_logging_once() -> None:
    limiter = RedisRateLimiter(
        f"redis://127.0.0.1:{closed_port()}/0", 2, prefix="unused:", timeout_s=0.2
    )
    before = fallbacks("error") + fallbacks("outage")
    try:
        with capture_logs() as logs:
            await spent(limiter, "subject:ada", 2)
            with pytest.raises(TooManyRequests):
                await limiter.spend("subject:ada")  # the fallback's budget of 2 a minute
            await limiter.spend("subject:grace")
    finally:
        await limiter.close()
    assert fallbacks("error") + fallbacks("outage") - before == 4
    warnings = [e for e in logs if e["event"] == "rate_limit_redis_unreachable"]
    assert len(warnings) == 1
    assert "ada" not in repr(warnings[0])  # keys carry subjects and addresses: never logged


async def test_a_redis_that_does_not_answer_costs_one_timeout_not_a_failed_request() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts and never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", 10, prefix="x:", timeout_s=0.1)
    before = fallbacks("timeout")
    try:
        async with asyncio.timeout(5):
            await spent(limiter, "subject:ada", 3)
    finally:
        await limiter.close()
        server.close()
        await server.wait_closed()
    assert fallbacks("timeout") - before == 1  # the next two skipped Redis during the outage


async def test_two_app_replicas_answer_429_from_one_shared_subject_budget(
    make_settings: Callable[..., Settings], redis_prefix: str
) -> None:
    apps: list[FastAPI] = []
    for name in ("a", "b"):
        settings = make_settings(
            cache_url=REDIS_URL,
            cache_prefix=redis_prefix + "cache:",
            hub_redis_prefix=redis_prefix + "hub",
            rate_limit_prefix=redis_prefix + "rl:",
            rate_limit_subject_per_minute=4,
        )
        apps.append(build_app(settings.model_copy(update={"data_dir": settings.data_dir / name})))
    statuses: list[int] = []
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        for app in (apps[0], apps[1], apps[0], apps[1], apps[0]):
            headers = {"Authorization": f"Bearer {mint_token(app, 'admin', sub='ada')}"}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                response = await http.get("/api/patients", headers=headers)
            statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 200, 429]
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1


async def test_the_composition_root_shares_budgets_per_role_through_redis(
    make_settings: Callable[..., Settings], redis_prefix: str
) -> None:
    def settings(role: str) -> Settings:
        return make_settings(
            cache_url=REDIS_URL,
            rate_limit_prefix=redis_prefix,
            rate_limit_subject_per_minute=1,
            # a loaded machine can take longer than the default 0.1 s for a first call
            # (connect, load the script): this test is about sharing, not the fallback
            rate_limit_timeout_s=2.0,
            role=role,
        )

    gateway, other_gateway, patients = (
        request_budgets(settings("gateway"))[1],
        request_budgets(settings("gateway"))[1],
        request_budgets(settings("patients"))[1],
    )
    try:
        await gateway.spend("subject:ada")
        await patients.spend("subject:ada")  # the same request, checked again behind the gateway
        with pytest.raises(TooManyRequests):
            await other_gateway.spend("subject:ada")  # another gateway replica: one budget
    finally:
        for budget in (gateway, other_gateway, patients):
            await budget.close()


def test_the_embedded_default_keeps_budgets_in_process(
    make_settings: Callable[..., Settings],
) -> None:
    budgets = request_budgets(make_settings())
    assert all(isinstance(budget, RateLimiter) for budget in budgets)


async def _evalsha_calls() -> int:
    client = Redis.from_url(REDIS_URL)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_spends_arriving_together_share_a_round_trip_and_decide_as_one_by_one(
    redis_limiters: Callable[..., RedisRateLimiter],
) -> None:
    limiter, other = redis_limiters(12), redis_limiters(12)
    await limiter.spend("subject:warm-up")  # connected, script loaded
    before = await _evalsha_calls()
    keys = ["subject:ada"] * 20 + ["subject:grace"] * 5
    outcomes = await asyncio.gather(*(limiter.spend(k) for k in keys), return_exceptions=True)
    calls = await _evalsha_calls() - before
    refused = [k for k, o in zip(keys, outcomes, strict=True) if isinstance(o, TooManyRequests)]
    # ada's bucket of 12 gives exactly 12 of her 20; grace's five are untouched by hers
    assert refused == ["subject:ada"] * 8
    assert all(o is None for o in outcomes if not isinstance(o, TooManyRequests))
    assert all(0 < o.retry_after_s <= 5.0 for o in outcomes if isinstance(o, TooManyRequests))
    assert 1 <= calls <= 2  # 25 spends, one or two round trips (not 25)
    with pytest.raises(TooManyRequests):
        await other.spend("subject:ada")  # the same shared bucket for another process


async def test_a_batch_redis_cannot_decide_is_decided_in_process_spend_by_spend() -> None:
    limiter = RedisRateLimiter(
        f"redis://127.0.0.1:{closed_port()}/0", 3, prefix="unused:", timeout_s=0.2
    )
    before = fallbacks("error") + fallbacks("timeout")
    try:
        outcomes = await asyncio.gather(
            *(limiter.spend("subject:ada") for _ in range(5)), return_exceptions=True
        )
    finally:
        await limiter.close()
    assert [isinstance(o, TooManyRequests) for o in outcomes] == [False] * 3 + [True] * 2
    assert fallbacks("error") + fallbacks("timeout") - before == 5  # one per spend so decided
