"""The EventBus contract, run over every adapter: the in-process bus and RabbitMQ."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from healthflow.ids import uuid7
from healthflow.messaging.dead_letters import SqlDeadLetterStore
from healthflow.messaging.events import CloudEvent
from healthflow.messaging.memory import MemoryBus
from healthflow.ports import Delivery, EventBus, Sink
from healthflow.storage import migrations
from tests.conftest import SteppingClock, eventually
from tests.integration.conftest import Rabbit, migrated

pytestmark = pytest.mark.integration
RETRIES = (0.05, 0.1)

BusFactory = Callable[[list[str]], Awaitable[EventBus]]


def event(subject: str = "p-1", n: int = 0) -> CloudEvent:
    now = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    return CloudEvent(
        id=str(uuid7(now)),
        source="/tests",
        type="PatientCreated",
        time=now,
        subject=subject,
        data={"n": n},
    )


@pytest.fixture(params=["memory", "rabbitmq"])
async def make_bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BusFactory]:
    """Builds a bus whose groups are declared up front; subscribe, then call `start`."""
    made: list[EventBus] = []
    closers: list[Callable[[], Awaitable[None]]] = []

    async def memory(groups: list[str]) -> EventBus:
        db = await migrated(f"sqlite+aiosqlite:///{tmp_path}/dl.db", migrations.PATIENTS)
        closers.append(db.dispose)
        bus = MemoryBus(
            dead_letters=SqlDeadLetterStore(db), clock=SteppingClock(), retry_delays_s=RETRIES
        )
        made.append(bus)
        return bus

    if request.param == "memory":
        factory: BusFactory = memory
    else:
        rabbit: Rabbit = request.getfixturevalue("rabbit")

        async def rabbitmq(groups: list[str]) -> EventBus:
            bus = rabbit.bus(groups=groups, retry_delays_s=RETRIES)
            made.append(bus)
            return bus

        factory = rabbitmq
    yield factory
    for bus in made:
        await bus.close()
    for close in closers:
        await close()


class Recorder:
    """A sink that records what it got and settles each delivery by a rule."""

    def __init__(self, fail_times: int = 0, error: str = "boom") -> None:
        self.seen: list[tuple[str, int]] = []
        self.fail_times = fail_times
        self.error = error

    async def __call__(self, delivery: Delivery) -> None:
        self.seen.append((delivery.event.id, delivery.attempt))
        if delivery.attempt <= self.fail_times:
            await delivery.reject(self.error)
        else:
            await delivery.ack()

    def ids(self) -> list[str]:
        return [i for i, _ in self.seen]


async def publish_in_background(bus: EventBus, events: list[CloudEvent]) -> asyncio.Task[None]:
    # the memory bus returns from publish only once every group settled; rabbit once confirmed
    return asyncio.create_task(bus.publish(events))


async def started(make_bus: BusFactory, sinks: dict[str, Sink]) -> EventBus:
    bus = await make_bus(list(sinks))
    for group, sink in sinks.items():
        bus.subscribe(group, sink)
    await bus.start()
    return bus


async def test_a_published_event_reaches_every_group_once(make_bus: BusFactory) -> None:
    first, second = Recorder(), Recorder()
    bus = await started(make_bus, {"analytics": first, "audit": second})
    sent = event()

    await (await publish_in_background(bus, [sent]))

    await eventually(lambda: _true(len(first.seen) == 1 and len(second.seen) == 1))
    assert first.seen == [(sent.id, 1)]
    assert second.seen == [(sent.id, 1)]


async def test_a_group_gets_only_the_event_types_it_subscribed_to(make_bus: BusFactory) -> None:
    readings, everything = Recorder(), Recorder()
    bus = await make_bus(["vitals", "audit"])
    bus.subscribe("vitals", readings, types={"VitalSignsRecorded"})
    bus.subscribe("audit", everything)
    await bus.start()
    created, reading = event(n=1), dataclasses.replace(event(n=2), type="VitalSignsRecorded")

    await (await publish_in_background(bus, [created, reading]))

    await eventually(lambda: _true(len(everything.seen) == 2 and len(readings.seen) == 1))
    await asyncio.sleep(0.2)  # anything misrouted would have arrived by now
    assert readings.ids() == [reading.id]
    assert sorted(everything.ids()) == sorted([created.id, reading.id])


async def test_events_of_one_subject_arrive_in_publish_order(make_bus: BusFactory) -> None:
    recorder = Recorder()
    bus = await started(make_bus, {"analytics": recorder})
    sent = [event("p-7", n) for n in range(30)]

    await (await publish_in_background(bus, sent))

    await eventually(lambda: _true(len(recorder.seen) == len(sent)))
    assert recorder.ids() == [e.id for e in sent]


async def test_a_failed_delivery_is_retried_and_then_succeeds(make_bus: BusFactory) -> None:
    recorder = Recorder(fail_times=1)
    bus = await started(make_bus, {"analytics": recorder})
    sent = event()

    await (await publish_in_background(bus, [sent]))

    await eventually(lambda: _true(len(recorder.seen) == 2))
    assert recorder.seen == [(sent.id, 1), (sent.id, 2)]
    assert await bus.dead_letters(group=None, limit=10) == []
    assert await bus.dead_letter_count() == 0


async def test_a_handler_that_always_fails_ends_in_the_dead_letters_with_its_error(
    make_bus: BusFactory,
) -> None:
    recorder = Recorder(fail_times=99, error="ValueError: ward unknown")
    bus = await started(make_bus, {"analytics": recorder})
    sent = event()

    await (await publish_in_background(bus, [sent]))

    async def dead_lettered() -> bool:
        return len(await bus.dead_letters(group="analytics", limit=10)) == 1

    await eventually(dead_lettered)
    [letter] = await bus.dead_letters(group="analytics", limit=10)
    assert letter.event == sent
    assert letter.error == "ValueError: ward unknown"
    assert letter.attempts == len(RETRIES) + 1
    assert [a for _, a in recorder.seen] == [1, 2, 3]


async def test_listing_dead_letters_loses_none(make_bus: BusFactory) -> None:
    bus = await started(make_bus, {"analytics": Recorder(fail_times=99)})
    sent = [event(f"p-{n}", n) for n in range(3)]
    await (await publish_in_background(bus, sent))

    async def all_dead() -> bool:
        return len(await bus.dead_letters(group=None, limit=10)) == 3

    await eventually(all_dead)
    first = await bus.dead_letters(group=None, limit=10)
    again = await bus.dead_letters(group=None, limit=10)
    assert [d.event.id for d in again] == [d.event.id for d in first]
    assert {d.event.id for d in first} == {e.id for e in sent}
    assert await bus.dead_letters(group="another", limit=10) == []
    assert len(await bus.dead_letters(group=None, limit=2)) == 2

    async def counted() -> bool:
        # the listings handed every letter back: all of them are counted again
        return await bus.dead_letter_count() == 3

    await eventually(counted)


async def test_a_second_subscriber_for_one_group_is_refused(make_bus: BusFactory) -> None:
    bus = await make_bus(["analytics"])
    bus.subscribe("analytics", Recorder())
    with pytest.raises(ValueError, match="already has a subscriber"):
        bus.subscribe("analytics", Recorder())


async def test_a_started_bus_reports_up(make_bus: BusFactory) -> None:
    bus = await started(make_bus, {"analytics": Recorder()})
    check = await bus.check()
    assert check.up
    assert "analytics" in check.detail["groups"]


async def _true(value: Any) -> bool:
    return bool(value)


async def test_waiting_counts_what_a_group_has_not_taken_yet(make_bus: BusFactory) -> None:
    # "vitals" is declared but nobody consumes it: on a broker its events wait in its queue;
    # the in-process bus holds nothing (publish awaits the sinks), so it has none waiting
    taken = Recorder()
    bus = await make_bus(["analytics", "vitals"])
    bus.subscribe("analytics", taken)
    await bus.start()

    await (await publish_in_background(bus, [event(n=n) for n in range(3)]))

    await eventually(lambda: _true(len(taken.seen) == 3))
    expected = 3 if bus.backend == "rabbitmq" else 0
    assert await bus.waiting("vitals") == expected
    assert await bus.waiting("analytics") == 0
    assert await bus.waiting("no-such-group") == 0
