"""The Redis cache (redis-py asyncio): shared by all processes, TTLs, prefix invalidation."""

from __future__ import annotations

import re

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from healthflow.ports import Check

log = structlog.get_logger(__name__)
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
SCAN_BATCH = 500


class RedisCache:
    """Cache over Redis; every key is namespaced by `prefix` so deployments and test runs share a
    server without touching each other's keys.

    Reads and writes degrade to a miss when Redis is unreachable (the store answers instead), but
    an invalidation that fails raises: the caller's event is then retried, so a stale entry can
    never outlive a change that was acknowledged.
    """

    def __init__(self, url: str, *, prefix: str, timeout_s: float = 2.0) -> None:
        self._prefix = prefix
        self._redis = Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    @property
    def backend(self) -> str:
        return "redis"

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self._prefix + key)
        except RedisError as exc:
            log.warning("cache_get_failed", key=key, error=repr(exc))
            return None
        if value is None:
            return None
        return value if isinstance(value, bytes) else str(value).encode()

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        try:
            await self._redis.set(self._prefix + key, value, px=max(1, round(ttl_s * 1000)))
        except RedisError as exc:
            log.warning("cache_set_failed", key=key, error=repr(exc))

    async def delete_prefix(self, prefix: str) -> None:
        # SCAN, not KEYS: never blocks the server; keys are deleted in batches as they are found
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self._prefix + prefix) + "*"
        batch: list[bytes] = []
        async for key in self._redis.scan_iter(match=pattern, count=SCAN_BATCH):
            batch.append(key)
            if len(batch) >= SCAN_BATCH:
                await self._redis.unlink(*batch)
                batch.clear()
        if batch:
            await self._redis.unlink(*batch)

    async def check(self) -> Check:
        try:
            await self._redis.ping()
        except RedisError as exc:
            return Check(False, {"backend": "redis", "error": type(exc).__name__})
        return Check(True, {"backend": "redis"})

    async def close(self) -> None:
        await self._redis.aclose()
