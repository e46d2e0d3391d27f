"""Request budgets shared by every process of a deployment: one token bucket per key in Redis.

Why a Lua script and not the `limits` library: `limits` (maintained, with a redis-py asyncio
storage) offers fixed, moving and sliding windows but no token bucket, so its budgets would
refill differently from the in-process limiter that stands in when Redis is down; its `hit()`
answers only yes or no, and a `Retry-After` needs a second, non-atomic round trip
(`get_window_stats`). The script below reads, refills, spends and stores a bucket atomically in
one round trip (EVALSHA through redis-py's registered script, loaded again after a server
restart) and answers the wait itself.

Spends that arrive while a round trip is in flight go together in the next one
(`storage.batching.Batcher`, as group commit does for writes): the script takes the keys in
arrival order, each from its bucket as it stands after the one before, so a batch decides
exactly what the same spends one after another would. Under load a request's budget check
costs a fraction of a round trip instead of a whole one (two per request: the client's and the
subject's). The keys of one call may fall in different hash slots: this is for a single Redis
server (or a primary with replicas), not Redis Cluster.

Resilience: every call is bounded by `timeout_s`. When Redis does not answer (refused, reset,
timed out) the request is decided by an in-process `RateLimiter` with the same budget, never
failed: one warning per outage (no keys: they carry subjects and addresses), a metric per
request so decided, and Redis is asked again only after `retry_after_outage_s`, so an outage
costs at most one timeout per interval, not one per request. During an outage the budgets are
per process again (N replicas, up to N times the budget), as without Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout
from redis.retry import Retry

from healthflow.observability import metrics
from healthflow.security.ratelimit import RateLimiter, TooManyRequests
from healthflow.storage.batching import Batch, Batcher

log = structlog.get_logger(__name__)

# KEYS: the buckets, one per spend, in order (a key may repeat); ARGV: capacity, refill per
# second, now in seconds ("" = the server's TIME, one clock for every process). Answers one
# item per key: 1 when spent, the seconds to wait (text) when refused. A key expires once its
# bucket would be full again: an absent key means a full bucket, so no state is lost and idle
# callers leave nothing behind.
_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local stamp = string.format('%.6f', now)
local answers = {}
for i, key in ipairs(KEYS) do
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or capacity
  local at = tonumber(state[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
  if tokens >= 1 then
    tokens = tokens - 1
    answers[i] = 1
  else
    answers[i] = string.format('%.6f', (1 - tokens) / rate)
  end
  redis.call('HSET', key, 'tokens', string.format('%.6f', tokens), 'at', stamp)
  redis.call('PEXPIRE', key, math.ceil((capacity - tokens) / rate * 1000) + 1000)
end
return answers
"""
# the most spends one round trip decides
MAX_BATCH = 256
# a batch's answer for a spend Redis could not decide: the in-process budget decides it
_FALLBACK = -1.0


class RedisRateLimiter:
    """`per_minute` requests per key, shared by every process using the Redis at `url`, `prefix`."""

    def __init__(
        self,
        url: str,
        per_minute: int,
        *,
        prefix: str,
        timeout_s: float,
        retry_after_outage_s: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        # no retries inside redis-py: one bounded attempt, then the in-process fallback
        self._redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._take = self._redis.register_script(_TAKE)
        # per spend: None when spent, the seconds to wait when refused, or _FALLBACK
        self._batches = Batcher[str, float | None](
            "rate_limit", handle=self._decide, max_batch=MAX_BATCH
        )
        self._prefix = prefix
        self._capacity = per_minute
        self._rate = per_minute / 60.0
        self._timeout_s = timeout_s
        self._retry_after_outage_s = retry_after_outage_s
        self._clock = clock  # tests only: None means Redis's own clock
        self._fallback = RateLimiter(per_minute)
        self._outage_until: float | None = None  # monotonic time to ask Redis again

    async def spend(self, key: str) -> None:
        """Spend one request of `key`'s shared budget; raises TooManyRequests when there is none."""
        if self._outage_until is not None and time.monotonic() < self._outage_until:
            metrics.RATE_LIMIT_FALLBACKS.labels(reason="outage").inc()
            self._fallback.take(key)
            return
        wait = await self._batches.submit(self._prefix + key)
        if wait == _FALLBACK:
            self._fallback.take(key)
        elif wait is not None:
            raise TooManyRequests(wait)

    async def _decide(self, batch: Batch[str, float | None]) -> None:
        """One round trip for the spends that arrived together, in their order."""
        now = "" if self._clock is None else repr(self._clock())
        try:
            async with asyncio.timeout(self._timeout_s):
                answers = await self._take(
                    keys=[key for key, _ in batch], args=[self._capacity, repr(self._rate), now]
                )
        except (RedisError, OSError, TimeoutError) as exc:
            self._outage(exc, spends=len(batch))
            answers = [_FALLBACK] * len(batch)
        else:
            if self._outage_until is not None:
                self._outage_until = None
                log.info("rate_limit_redis_recovered")
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():  # the caller gave up waiting
                future.set_result(None if answer == 1 else float(answer))

    def _outage(self, exc: BaseException, *, spends: int) -> None:
        # the socket timeout and asyncio's are the same length: either may fire first
        reason = "timeout" if isinstance(exc, TimeoutError | RedisTimeout) else "error"
        metrics.RATE_LIMIT_FALLBACKS.labels(reason=reason).inc(spends)
        if self._outage_until is None:
            log.warning(
                "rate_limit_redis_unreachable",
                error=type(exc).__name__,
                fallback="in-process budgets until Redis answers",
            )
        self._outage_until = time.monotonic() + self._retry_after_outage_s

    async def close(self) -> None:
        await self._redis.aclose()
