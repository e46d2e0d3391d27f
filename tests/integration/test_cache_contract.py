"""The Cache contract, run over every adapter: the in-process LRU and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from healthflow.ports import Cache
from healthflow.storage.cache import MemoryCache
from healthflow.storage.redis_cache import RedisCache
from tests.conftest import eventually
from tests.integration.conftest import REDIS_URL

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "memory":
        yield MemoryCache(max_entries=100)
        return
    prefix: str = request.getfixturevalue("redis_prefix")
    redis = RedisCache(REDIS_URL, prefix=prefix)
    yield redis
    await redis.close()


async def test_a_stored_value_is_read_back(cache: Cache) -> None:
    await cache.set("patients:1", b"ada", ttl_s=60)
    assert await cache.get("patients:1") == b"ada"


async def test_a_missing_key_reads_as_none(cache: Cache) -> None:
    assert await cache.get("nothing-here") is None


async def test_setting_again_replaces_the_value(cache: Cache) -> None:
    await cache.set("k", b"old", ttl_s=60)
    await cache.set("k", b"new", ttl_s=60)
    assert await cache.get("k") == b"new"


async def test_an_entry_expires_after_its_ttl(cache: Cache) -> None:
    await cache.set("short", b"x", ttl_s=0.05)
    await cache.set("long", b"y", ttl_s=60)

    async def expired() -> bool:
        return await cache.get("short") is None

    await eventually(expired)
    assert await cache.get("long") == b"y"


async def test_delete_prefix_removes_exactly_the_keys_under_it(cache: Cache) -> None:
    for key in ("dash:7", "dash:30", "dashboard", "patients:1"):
        await cache.set(key, b"v", ttl_s=60)

    await cache.delete_prefix("dash:")

    assert await cache.get("dash:7") is None
    assert await cache.get("dash:30") is None
    assert await cache.get("dashboard") == b"v"
    assert await cache.get("patients:1") == b"v"


async def test_glob_characters_in_a_prefix_are_taken_literally(cache: Cache) -> None:
    await cache.set("a*b:1", b"v", ttl_s=60)
    await cache.set("axb:1", b"v", ttl_s=60)
    await cache.set("a?[c]:1", b"v", ttl_s=60)

    await cache.delete_prefix("a*b:")
    await cache.delete_prefix("a?[c]")

    assert await cache.get("a*b:1") is None
    assert await cache.get("a?[c]:1") is None
    assert await cache.get("axb:1") == b"v"


async def test_many_keys_are_invalidated_in_batches(cache: Cache) -> None:
    for n in range(1200):
        await cache.set(f"bulk:{n}", b"v", ttl_s=60)
    await cache.delete_prefix("bulk:")
    assert [n for n in range(0, 1200, 97) if await cache.get(f"bulk:{n}") is not None] == []


async def test_redis_keys_stay_inside_their_prefix(redis_prefix: str) -> None:
    one = RedisCache(REDIS_URL, prefix=redis_prefix + "one:")
    two = RedisCache(REDIS_URL, prefix=redis_prefix + "two:")
    try:
        await one.set("k", b"1", ttl_s=60)
        await two.set("k", b"2", ttl_s=60)
        await one.delete_prefix("")
        assert await one.get("k") is None
        assert await two.get("k") == b"2"
    finally:
        await one.close()
        await two.close()


async def test_an_unreachable_redis_reads_as_a_miss_and_reports_down() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0", prefix="x:", timeout_s=0.5)
    try:
        assert await cache.get("k") is None
        await cache.set("k", b"v", ttl_s=5)  # degrades to nothing, no exception
        assert not (await cache.check()).up
    finally:
        await cache.close()
