"""The hub contract, run over every adapter (memory, Redis), plus what only a backplane can do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio
from prometheus_client import REGISTRY

from healthflow.realtime import protocol
from healthflow.realtime.fanout import Connection, Fanout
from healthflow.realtime.hub import LiveHub, MemoryHub
from healthflow.realtime.redis_backplane import RedisHub
from tests.conftest import eventually
from tests.e2e.live import now, patient_data
from tests.integration.redis_support import REDIS_URL, needs_redis, redis_prefix

__all__ = ["redis_prefix"]
MakeHub = Callable[..., Awaitable[LiveHub]]


def fanout(replay_size: int = 100) -> Fanout:
    return Fanout(replay_size=replay_size, send_queue_size=1000, max_clients=100)


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
async def make_hub(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[MakeHub]:
    """Start hubs of one kind; Redis hubs made by one test share a stream like instances do."""
    hubs: list[LiveHub] = []

    async def make(replay_size: int = 100) -> LiveHub:
        hub: LiveHub
        if request.param == "memory":
            hub = MemoryHub(fanout(replay_size), vitals_min_interval_s=0)
        else:
            hub = RedisHub(
                fanout(replay_size),
                url=REDIS_URL,
                prefix=redis_prefix,
                replay_size=replay_size,
                publish_timeout_s=2,
                vitals_min_interval_s=0,
                block_s=0.5,
            )
        await hub.start()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        await hub.close()


def backplane_hub(prefix: str, *, tail: bool = True) -> RedisHub:
    """An instance on the test's Redis prefix; `tail=False` publishes only (the services)."""
    return RedisHub(
        fanout(),
        url=REDIS_URL,
        prefix=prefix,
        replay_size=100,
        publish_timeout_s=2,
        vitals_min_interval_s=0,
        block_s=0.5,
        tail=tail,
    )


def listen(hub: LiveHub, *topics: str) -> Connection:
    connection = hub.fanout.connect()
    assert connection is not None
    protocol.subscribe(hub.fanout, connection, list(topics))
    return connection


async def received(connection: Connection, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []

    async def enough() -> bool:
        got.extend(orjson.loads(frame) for seq, frame in connection.take() if seq > 0)
        return len(got) >= count

    await eventually(enough)
    await asyncio.sleep(0.05)
    got.extend(orjson.loads(frame) for seq, frame in connection.take() if seq > 0)
    return got


async def test_a_broadcast_reaches_subscribers_numbered_from_the_head(make_hub: MakeHub) -> None:
    hub = await make_hub()
    icu, other = listen(hub, "ward:ICU"), listen(hub, "ward:B2")
    data = patient_data("ICU", severity="high")
    await hub.broadcast("AlertRaised", data, now())
    [message] = await received(icu, 1)
    assert message["seq"] == hub.fanout.head
    assert message["topic"] == "ward:ICU"
    assert message["type"] == "AlertRaised"
    assert message["data"] == data
    assert other.take() == []


async def test_resume_replays_the_missed_messages_in_order(make_hub: MakeHub) -> None:
    hub = await make_hub()
    watcher = listen(hub, "alerts")
    for n in range(6):
        await hub.broadcast("AlertRaised", patient_data("ICU", n=n), now())
    seen = await received(watcher, 6)
    late = hub.fanout.connect()
    assert late is not None
    protocol.resume(hub.fanout, late, seen[2]["seq"], ["alerts"])
    frames = [orjson.loads(frame) for _, frame in late.take()]
    assert frames[0]["type"] == "Resumed"
    assert [m["data"]["n"] for m in frames[1:]] == [3, 4, 5]


async def test_a_message_without_any_topic_is_not_numbered(make_hub: MakeHub) -> None:
    hub = await make_hub()
    head = hub.fanout.head
    await hub.broadcast("SomethingElse", {"x": 1}, now())
    await asyncio.sleep(0.1)
    assert hub.fanout.head == head


@needs_redis
async def test_two_instances_see_every_message_once_with_the_same_seq(redis_prefix: str) -> None:
    hubs = [backplane_hub(redis_prefix) for _ in range(2)]
    for hub in hubs:
        await hub.start()
    try:
        a, b = hubs
        on_a, on_b = listen(a, "patients"), listen(b, "patients")
        await asyncio.gather(
            *(
                hub.broadcast("PatientCreated", patient_data("ICU", n=n, by=i), now())
                for n in range(25)
                for i, hub in enumerate(hubs)
            )
        )
        got_a, got_b = await received(on_a, 50), await received(on_b, 50)
        assert got_a == got_b
        assert [m["seq"] for m in got_a] == list(range(1, 51))
        # each instance's messages keep its publishing order, batched into script calls or not
        for i in range(2):
            assert [m["data"]["n"] for m in got_a if m["data"]["by"] == i] == list(range(25))
        # a client that saw seq 20 on A resumes on B with nothing missing or repeated
        moved = b.fanout.connect()
        assert moved is not None
        protocol.resume(b.fanout, moved, 20, ["patients"])
        replay = [orjson.loads(frame) for seq, frame in moved.take() if seq > 0]
        assert replay == got_a[20:]
    finally:
        for hub in hubs:
            await hub.close()


@needs_redis
async def test_an_instance_started_later_can_serve_resume(redis_prefix: str) -> None:
    early = backplane_hub(redis_prefix)
    await early.start()
    for n in range(5):
        await early.broadcast("AlertRaised", patient_data("ICU", n=n), now())

    async def published() -> bool:
        return early.fanout.head == 5

    await eventually(published)
    late = backplane_hub(redis_prefix)
    await late.start()
    try:
        assert late.fanout.head == 5
        connection = late.fanout.connect()
        assert connection is not None
        protocol.resume(late.fanout, connection, 2, ["alerts"])
        replay = [orjson.loads(frame) for seq, frame in connection.take() if seq > 0]
        assert [m["seq"] for m in replay] == [3, 4, 5]
    finally:
        await early.close()
        await late.close()


@needs_redis
async def test_a_publishing_only_instance_reaches_the_others_and_reads_nothing_back(
    redis_prefix: str,
) -> None:
    # the patients and analytics roles: they push, the gateway's clients receive
    service, gateway = backplane_hub(redis_prefix, tail=False), backplane_hub(redis_prefix)
    await gateway.start()
    await service.start()
    try:
        on_gateway = listen(gateway, "patients")
        for n in range(5):
            await service.broadcast("PatientCreated", patient_data("ICU", n=n), now())

        got = await received(on_gateway, 5)

        assert [m["seq"] for m in got] == [1, 2, 3, 4, 5]
        assert [m["data"]["n"] for m in got] == list(range(5))
        assert service.fanout.head == 0  # nothing read back into a ring nobody is served from
        assert [t.get_name() for t in service._tasks if not t.done()].count(
            "hub-backplane-reader"
        ) == 0
    finally:
        await service.close()
        await gateway.close()


async def test_a_hub_whose_redis_is_down_drops_publishes_but_starts_and_stops() -> None:
    hub = RedisHub(
        fanout(),
        url="redis://127.0.0.1:1/0",
        prefix="unreachable",
        replay_size=10,
        publish_timeout_s=0.5,
        vitals_min_interval_s=0,
        block_s=0.5,
    )
    failed = (
        REGISTRY.get_sample_value("healthflow_hub_backplane_errors_total", {"op": "publish"}) or 0.0
    )
    await hub.start()
    try:
        await hub.broadcast("AlertRaised", patient_data("ICU"), now())  # returns at once

        async def counted_as_lost() -> bool:
            lost = REGISTRY.get_sample_value(
                "healthflow_hub_backplane_errors_total", {"op": "publish"}
            )
            return (lost or 0.0) > failed

        await eventually(counted_as_lost)
        assert hub.fanout.head == 0
    finally:
        await hub.close()


@needs_redis
async def test_entries_an_instance_never_read_make_its_clients_resync(redis_prefix: str) -> None:
    hub = backplane_hub(redis_prefix)
    await hub.start()
    try:
        watcher = listen(hub, "alerts")
        await hub.broadcast("AlertRaised", patient_data("ICU"), now())
        await received(watcher, 1)
        # as if seqs 2..9 had been trimmed before this instance read them
        raw = redis.asyncio.Redis.from_url(REDIS_URL)
        meta = {"type": "AlertRaised", "time": now().isoformat(), "topics": ["alerts"]}
        await raw.xadd(hub.stream, {"m": orjson.dumps(meta), "d": b"{}"}, id="10-0")
        await raw.aclose()
        got: list[tuple[int, dict[str, Any]]] = []

        async def saw_the_jump() -> bool:
            got.extend((seq, orjson.loads(frame)) for seq, frame in watcher.take())
            return any(seq == 10 for seq, _ in got)

        await eventually(saw_the_jump)
        assert [(seq, frame.get("type")) for seq, frame in got] == [
            (-9, "Resync"),
            (10, "AlertRaised"),
        ]
    finally:
        await hub.close()
