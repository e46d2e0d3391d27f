"""The RequestBudget contract, run over both adapters: in-process buckets and Redis buckets.

Both are driven by the same hand-moved clock (the Redis adapter sends it to the script instead
of the server's TIME), so every case is exact and the adapters cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from healthflow.ports import RequestBudget
from healthflow.security.ratelimit import RateLimiter, TooManyRequests

pytestmark = pytest.mark.integration

Budgets = Callable[[int], RequestBudget]


class Ticks:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture(params=["memory", "redis"])
def budgets(request: pytest.FixtureRequest, ticks: Ticks) -> Budgets:
    """Make budgets of one adapter, `per_minute` each, on the test's clock."""
    if request.param == "memory":
        return lambda per_minute: RateLimiter(per_minute, clock=ticks)
    redis_limiters = request.getfixturevalue("redis_limiters")
    return lambda per_minute: redis_limiters(per_minute, clock=ticks)


async def test_a_burst_up_to_the_budget_passes_and_the_next_is_refused_with_a_wait(
    budgets: Budgets,
) -> None:
    budget = budgets(3)
    for _ in range(3):
        await budget.spend("subject:a")
    with pytest.raises(TooManyRequests) as refused:
        await budget.spend("subject:a")
    assert refused.value.retry_after_s == pytest.approx(20.0, abs=0.01)  # 3/min: one per 20 s


async def test_each_key_has_its_own_budget(budgets: Budgets) -> None:
    budget = budgets(1)
    await budget.spend("subject:a")
    await budget.spend("subject:b")
    await budget.spend("client:a")
    with pytest.raises(TooManyRequests):
        await budget.spend("subject:a")


async def test_the_budget_refills_per_minute_over_sixty_each_second(
    budgets: Budgets, ticks: Ticks
) -> None:
    budget = budgets(60)
    for _ in range(60):
        await budget.spend("subject:a")
    with pytest.raises(TooManyRequests):
        await budget.spend("subject:a")
    ticks.now += 1.0
    await budget.spend("subject:a")
    ticks.now += 0.25
    with pytest.raises(TooManyRequests) as refused:
        await budget.spend("subject:a")
    assert refused.value.retry_after_s == pytest.approx(0.75, abs=0.01)


async def test_an_idle_key_refills_only_up_to_its_burst(budgets: Budgets, ticks: Ticks) -> None:
    budget = budgets(2)
    await budget.spend("subject:a")
    ticks.now += 600.0
    await budget.spend("subject:a")
    await budget.spend("subject:a")
    with pytest.raises(TooManyRequests):
        await budget.spend("subject:a")


async def test_a_refused_request_spends_nothing(budgets: Budgets, ticks: Ticks) -> None:
    budget = budgets(1)
    await budget.spend("subject:a")
    for _ in range(5):
        with pytest.raises(TooManyRequests):
            await budget.spend("subject:a")
    ticks.now += 60.0
    await budget.spend("subject:a")
