"""Real Redis at 127.0.0.1:6379 for tests: skipped with a reason when down, a random prefix each."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


needs_redis = pytest.mark.skipif(
    not redis_up(), reason="Redis is not answering on 127.0.0.1:6379 (scripts/ensure-services.sh)"
)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix no other test run uses; its keys are deleted afterwards."""
    prefix = f"test-hub-{uuid.uuid4().hex}"
    yield prefix
    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        async for key in client.scan_iter(match=f"{prefix}:*"):
            await client.delete(key)
    except (redis.RedisError, OSError):
        pass  # Redis is down: the test was skipped or made no keys
    finally:
        await client.aclose()
