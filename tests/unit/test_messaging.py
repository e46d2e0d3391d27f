"""The in-process bus, the worker runtime and the outbox relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from healthflow.messaging import dead_letters as dead_letter_schema
from healthflow.messaging.dead_letters import SqlDeadLetterStore
from healthflow.messaging.events import CloudEvent
from healthflow.messaging.memory import MemoryBus
from healthflow.messaging.worker import WorkerPool
from healthflow.ports import Delivery
from healthflow.storage.engine import Database, open_database
from tests.conftest import SteppingClock, eventually


def event(n: int, subject: str = "p1") -> CloudEvent:
    return CloudEvent(
        id=f"e{n}",
        source="/test",
        type="Tested",
        time=datetime(2026, 1, 1, tzinfo=UTC),
        subject=subject,
        data={"n": n},
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = open_database(f"sqlite+aiosqlite:///{tmp_path}/bus.db")
    await database.create_schema(dead_letter_schema.metadata)
    yield database
    await database.dispose()


@pytest.fixture
def bus(db: Database) -> MemoryBus:
    return MemoryBus(
        dead_letters=SqlDeadLetterStore(db), clock=SteppingClock(), retry_delays_s=(0.01, 0.01)
    )


async def test_publish_returns_once_every_group_acked(bus: MemoryBus) -> None:
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def sink_for(group: str):  # type: ignore[no-untyped-def]
        async def sink(delivery: Delivery) -> None:
            seen[group].append(delivery.event.id)
            await delivery.ack()

        return sink

    bus.subscribe("a", sink_for("a"))
    bus.subscribe("b", sink_for("b"))
    await bus.publish([event(1), event(2)])
    assert seen == {"a": ["e1", "e2"], "b": ["e1", "e2"]}


async def test_publish_waits_for_the_last_ack_even_when_the_first_comes_at_once(
    bus: MemoryBus,
) -> None:
    held: list[Delivery] = []

    async def first_at_once(delivery: Delivery) -> None:
        if delivery.event.id == "e1":
            await delivery.ack()  # settled before the next one is even handed over
            await delivery.ack()  # and twice: counted once
        else:
            held.append(delivery)

    bus.subscribe("g", first_at_once)
    publishing = asyncio.create_task(bus.publish([event(1), event(2), event(3)]))
    await asyncio.sleep(0.01)
    assert not publishing.done() and [d.event.id for d in held] == ["e2", "e3"]
    await held[1].ack()
    await asyncio.sleep(0.01)
    assert not publishing.done()
    await held[0].ack()
    await asyncio.wait_for(publishing, 1)


async def test_publishes_at_once_reach_a_full_queue_in_the_order_they_were_made(
    bus: MemoryBus,
) -> None:
    queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=1)  # a worker's queue, full at once
    bus.subscribe("g", queue.put)
    first = asyncio.create_task(bus.publish([event(1), event(2), event(3)]))
    await asyncio.sleep(0)  # e1 queued, e2 waits for room
    second = asyncio.create_task(bus.publish([event(4), event(5), event(6)]))
    await asyncio.sleep(0)
    seen: list[str] = []
    while len(seen) < 6:
        delivery = await queue.get()
        seen.append(delivery.event.id)
        await delivery.ack()
    await asyncio.wait_for(asyncio.gather(first, second), 1)
    # handed over side by side, a waiting put queues up again behind the other publish: mixed
    assert seen == ["e1", "e2", "e3", "e4", "e5", "e6"]


async def test_a_rejected_delivery_is_retried_then_acked(bus: MemoryBus) -> None:
    attempts: list[int] = []

    async def flaky(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt < 3:
            await delivery.reject("not yet")
        else:
            await delivery.ack()

    bus.subscribe("g", flaky)
    await bus.publish([event(1)])
    assert attempts == [1, 2, 3]
    assert await bus.dead_letters(group="g", limit=10) == []


async def test_a_delivery_failing_every_retry_is_dead_lettered_durably(
    bus: MemoryBus, db: Database
) -> None:
    async def broken(delivery: Delivery) -> None:
        await delivery.reject(f"boom {delivery.attempt}")

    bus.subscribe("g", broken)
    await bus.publish([event(7)])
    letters = await bus.dead_letters(group="g", limit=10)
    assert [(d.event.id, d.attempts, d.error) for d in letters] == [("e7", 3, "boom 3")]
    assert await SqlDeadLetterStore(db).count() == 1


async def test_a_group_cannot_be_subscribed_twice(bus: MemoryBus) -> None:
    async def sink(delivery: Delivery) -> None:
        await delivery.ack()

    bus.subscribe("g", sink)
    with pytest.raises(ValueError, match="already"):
        bus.subscribe("g", sink)


async def test_worker_pool_keeps_one_partition_in_order_across_workers() -> None:
    handled: list[tuple[str, int]] = []

    async def handler(e: CloudEvent) -> None:
        await asyncio.sleep(0.001 * (e.data["n"] % 3))
        handled.append((e.subject, e.data["n"]))

    pool = WorkerPool("t", handler, workers=4, capacity=16)
    pool.start()
    bus_like = [event(n, subject=f"p{n % 5}") for n in range(60)]
    acked: list[str] = []
    for e in bus_like:
        await pool.submit(_Recorded(e, acked))
    await pool.stop(grace_s=5)
    assert len(acked) == 60
    for subject in {e.subject for e in bus_like}:
        ns = [n for s, n in handled if s == subject]
        assert ns == sorted(ns)


async def test_worker_pool_submit_waits_while_full() -> None:
    release = asyncio.Event()

    async def handler(_: CloudEvent) -> None:
        await release.wait()

    pool = WorkerPool("t", handler, workers=1, capacity=2)
    pool.start()
    acked: list[str] = []
    for n in range(3):  # one in the worker's hands, two queued: full
        await pool.submit(_Recorded(event(n), acked))
    await eventually(lambda: _true(pool.busy == 1))
    blocked = asyncio.create_task(pool.submit(_Recorded(event(9), acked)))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    assert pool.depth == pool.capacity == 2
    release.set()
    await asyncio.wait_for(blocked, 5)
    await pool.stop(grace_s=5)
    assert sorted(acked) == ["e0", "e1", "e2", "e9"]


async def test_worker_pool_rejects_a_failed_handling_and_acks_nothing() -> None:
    async def handler(_: CloudEvent) -> None:
        raise RuntimeError("store down")

    pool = WorkerPool("t", handler, workers=1, capacity=1)
    pool.start()
    delivery = _Recorded(event(1), [])
    await pool.submit(delivery)
    await pool.stop(grace_s=5)
    assert delivery.acked == [] and delivery.rejections == ["RuntimeError: store down"]


async def test_stopped_pool_refuses_new_work() -> None:
    async def handler(_: CloudEvent) -> None:
        return None

    pool = WorkerPool("t", handler, workers=1, capacity=1)
    pool.start()
    await pool.stop(grace_s=1)
    with pytest.raises(RuntimeError, match="stopping"):
        await pool.submit(_Recorded(event(1), []))


async def test_offload_runs_cpu_work_off_the_event_loop() -> None:
    import threading

    async def handler(_: CloudEvent) -> None:
        return None

    pool = WorkerPool("t", handler, workers=2, capacity=2)
    pool.start()
    thread = await pool.offload(lambda: threading.current_thread().name)
    await pool.stop(grace_s=1)
    assert thread.startswith("t-cpu")


async def _true(value: bool) -> bool:
    return value


class _Recorded:
    """A Delivery that records how it was settled."""

    def __init__(self, event: CloudEvent, acked: list[str]) -> None:
        self.event = event
        self.attempt = 1
        self.acked = acked
        self.rejections: list[str] = []

    async def ack(self) -> None:
        self.acked.append(self.event.id)

    async def reject(self, error: str) -> None:
        self.rejections.append(error)


class FlakyDeadLetters:
    """A DeadLetterStore whose writes fail until it is told to recover."""

    def __init__(self, inner: SqlDeadLetterStore) -> None:
        self.inner = inner
        self.down = True
        self.failed_writes = 0

    async def add(self, letter):  # type: ignore[no-untyped-def]
        if self.down:
            self.failed_writes += 1
            raise ConnectionError("dead-letter store unreachable")
        await self.inner.add(letter)

    async def list(self, *, group, limit):  # type: ignore[no-untyped-def]
        return await self.inner.list(group=group, limit=limit)

    async def count(self) -> int:
        return await self.inner.count()


async def test_an_event_is_kept_retrying_while_the_dead_letter_store_is_down(
    db: Database,
) -> None:
    letters = FlakyDeadLetters(SqlDeadLetterStore(db))
    bus = MemoryBus(dead_letters=letters, clock=SteppingClock(), retry_delays_s=(0.01,))

    async def broken(delivery: Delivery) -> None:
        await delivery.reject("handler down")

    bus.subscribe("g", broken)
    publishing = asyncio.create_task(bus.publish([event(3)]))
    await eventually(lambda: _true(letters.failed_writes >= 2))
    assert not publishing.done()  # not confirmed, so the outbox would keep it
    letters.down = False
    await asyncio.wait_for(publishing, 5)
    assert [d.event.id for d in await bus.dead_letters(group="g", limit=5)] == ["e3"]
    await bus.close()


async def test_a_worker_survives_an_ack_that_fails() -> None:
    handled: list[str] = []

    async def handler(e: CloudEvent) -> None:
        handled.append(e.id)

    class AckFails(_Recorded):
        async def ack(self) -> None:
            raise ConnectionError("channel closed")

    pool = WorkerPool("t", handler, workers=1, capacity=2)
    pool.start()
    await pool.submit(AckFails(event(1), []))
    acked: list[str] = []
    await pool.submit(_Recorded(event(2), acked))
    await pool.stop(grace_s=5)
    assert handled == ["e1", "e2"] and acked == ["e2"]


async def test_a_worker_hands_waiting_events_over_as_one_batch() -> None:
    batches: list[list[str]] = []

    async def one(e: CloudEvent) -> None:
        batches.append([e.id])

    async def many(events: Sequence[CloudEvent]) -> None:
        batches.append([e.id for e in events])

    pool = WorkerPool("t-batches", one, workers=1, capacity=10, batch_handler=many, max_batch=3)
    pool.start()
    acked: list[str] = []
    for n in range(7):  # queued before the worker first runs
        await pool.submit(_Recorded(event(n), acked))
    await pool.stop(grace_s=5)
    assert batches == [["e0", "e1", "e2"], ["e3", "e4", "e5"], ["e6"]]
    assert acked == [f"e{n}" for n in range(7)]
    # what /metrics says of them (the benchmark reports the mean)
    sizes = {"pool": "t-batches"}
    assert REGISTRY.get_sample_value("healthflow_worker_batch_size_sum", sizes) == 7
    assert REGISTRY.get_sample_value("healthflow_worker_batch_size_count", sizes) == 3


async def test_a_failed_batch_is_retried_singly_so_only_the_bad_event_fails() -> None:
    gate = asyncio.Event()
    singles: list[str] = []

    async def one(e: CloudEvent) -> None:
        if e.id == "e0":
            await gate.wait()
        if e.id == "e2":
            raise ValueError("poison")
        singles.append(e.id)

    async def many(events: Sequence[CloudEvent]) -> None:
        raise ValueError("batch contains poison")

    pool = WorkerPool("t", one, workers=1, capacity=10, batch_handler=many, max_batch=10)
    pool.start()
    acked: list[str] = []
    deliveries = [_Recorded(event(n), acked) for n in range(4)]
    for d in deliveries:
        await pool.submit(d)
    gate.set()
    await pool.stop(grace_s=5)
    assert singles == ["e0", "e1", "e3"] and acked == ["e0", "e1", "e3"]
    assert deliveries[2].rejections == ["ValueError: poison"]
