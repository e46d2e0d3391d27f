"""Per-caller request budgets (token buckets), per subject and per client address.

Two adapters of one port (`healthflow.ports.RequestBudget`), picked by the composition root:

- `RateLimiter` (here): in-process buckets, the embedded default (`cache_url` memory://). Each
  process keeps its own, so with N replicas a caller gets up to N times the budget; it still
  stops a runaway script or a password-spraying client before it reaches the database.
- `RedisRateLimiter` (`security/redis_ratelimit.py`): one bucket per key in Redis, shared by every
  process of the deployment (`cache_url` redis://). When Redis cannot answer in time it falls
  back to a `RateLimiter` of its own for that request.

Both give `per_minute` requests per key, bursting up to that many, refilled continuously
(per_minute / 60 a second), and refuse with `TooManyRequests(retry_after_s)`: http.py turns that
into a 429 problem with `Retry-After`.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


class TooManyRequests(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"request budget spent; retry in {math.ceil(retry_after_s)} s")
        self.retry_after_s = retry_after_s


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`per_minute` requests per key, bursting up to that many; at most `max_keys` keys kept
    (least recently seen forgotten first), so memory stays bounded whatever the traffic."""

    def __init__(
        self,
        per_minute: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> None:
        """Spend one request of `key`'s budget; raises TooManyRequests when there is none."""
        now = self._clock()
        bucket = self._buckets.pop(key, None) or _Bucket(self._capacity, now)
        bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        self._buckets[key] = bucket
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1.0:
            raise TooManyRequests((1.0 - bucket.tokens) / self._rate)
        bucket.tokens -= 1.0

    async def spend(self, key: str) -> None:
        """The port's form of `take`: nothing to wait for in process."""
        self.take(key)

    async def close(self) -> None:
        """Nothing to release."""
