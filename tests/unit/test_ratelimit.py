"""Token-bucket request budgets."""

from __future__ import annotations

import pytest

from healthflow.security.ratelimit import RateLimiter, TooManyRequests


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_up_to_the_budget_passes_and_the_next_is_refused_with_a_wait() -> None:
    ticks = Ticks()
    limiter = RateLimiter(3, clock=ticks)
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(TooManyRequests) as refused:
        limiter.take("a")
    assert refused.value.retry_after_s == pytest.approx(20.0)


def test_budgets_refill_with_time_and_are_per_key() -> None:
    ticks = Ticks()
    limiter = RateLimiter(60, clock=ticks)
    for _ in range(60):
        limiter.take("a")
    limiter.take("b")
    with pytest.raises(TooManyRequests):
        limiter.take("a")
    ticks.now += 1.0
    limiter.take("a")


def test_memory_is_bounded_by_forgetting_the_least_recent_key() -> None:
    ticks = Ticks()
    limiter = RateLimiter(1, max_keys=2, clock=ticks)
    limiter.take("a")
    limiter.take("b")
    limiter.take("c")  # "a" is forgotten: it starts afresh
    limiter.take("a")
    with pytest.raises(TooManyRequests):
        limiter.take("a")
