"""Events published together travel as CloudEvents batches (one AMQP message for many events):
fewer messages, the same guarantees per event: order, exactly one effect, retries and dead
letters of one event without its neighbours, nothing lost when a consumer stops mid-batch."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest

from healthflow.ids import uuid7
from healthflow.messaging.events import BATCH, CloudEvent
from healthflow.messaging.rabbitmq import RabbitBus
from healthflow.ports import Delivery
from tests.conftest import SteppingClock, eventually
from tests.integration.conftest import Rabbit

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def events(count: int, kind: str = "PatientCreated", subject: str = "p-1") -> list[CloudEvent]:
    return [
        CloudEvent(
            id=str(uuid7(T0 + timedelta(milliseconds=n))),
            source="/tests",
            type=kind,
            time=T0,
            subject=subject,
            data={"n": n},
        )
        for n in range(count)
    ]


class Sink:
    """Records (event id, attempt); rejects the events named in `fail` on their first attempts."""

    def __init__(self, fail: dict[str, int] | None = None, *, stop_at: str | None = None) -> None:
        self.seen: list[tuple[str, int]] = []
        self.fail = fail or {}
        self.stop_at = stop_at

    async def __call__(self, delivery: Delivery) -> None:
        if delivery.event.id == self.stop_at:
            raise RuntimeError("the worker pool is stopping")
        self.seen.append((delivery.event.id, delivery.attempt))
        if delivery.attempt <= self.fail.get(delivery.event.id, 0):
            await delivery.reject("boom")
        else:
            await delivery.ack()

    def ids(self) -> list[str]:
        return [i for i, _ in self.seen]


async def ready(rabbit: Rabbit, queue: str) -> int:
    """Messages ready in a queue (unacked ones not counted), asked of the broker directly."""
    connection = await aio_pika.connect(rabbit.url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def _true(value: bool) -> bool:
    return value


async def test_events_published_together_are_few_messages_and_arrive_in_order(
    rabbit: Rabbit,
) -> None:
    publisher = rabbit.bus(groups=["analytics"], batch_events=100)
    await publisher.start()
    sent = events(250)
    try:
        await publisher.publish(sent)

        # 100 + 100 + 50 events: three messages for the broker to store and confirm
        assert await ready(rabbit, f"{rabbit.exchange}.analytics") == 3
        # the backlog in events, as the telemetry intake asks for it
        assert await publisher.waiting("analytics") == 250

        consumer = rabbit.bus(groups=["analytics"])
        sink = Sink()
        consumer.subscribe("analytics", sink)
        await consumer.start()
        try:
            await eventually(lambda: _true(len(sink.seen) == len(sent)))
        finally:
            await consumer.close()
        assert sink.ids() == [e.id for e in sent]
        assert {attempt for _, attempt in sink.seen} == {1}
        # every message acked: none went back to the queue when the consumer closed
        assert await ready(rabbit, f"{rabbit.exchange}.analytics") == 0
    finally:
        await publisher.close()


async def test_a_batch_holds_one_type_so_routing_is_unchanged(rabbit: Rabbit) -> None:
    bus = rabbit.bus(groups=["vitals", "audit"])
    readings, everything = Sink(), Sink()
    bus.subscribe("vitals", readings, types={"VitalSignsRecorded"})
    bus.subscribe("audit", everything)
    await bus.start()
    created = events(3)
    recorded = [dataclasses.replace(e, type="VitalSignsRecorded") for e in events(3, subject="p-2")]
    mixed = [created[0], recorded[0], recorded[1], created[1], created[2], recorded[2]]
    try:
        await bus.publish(mixed)

        await eventually(lambda: _true(len(everything.seen) == 6 and len(readings.seen) == 3))
        assert readings.ids() == [e.id for e in recorded]
        assert everything.ids() == [e.id for e in mixed]
    finally:
        await bus.close()


async def test_a_failure_in_a_batch_retries_that_event_alone(rabbit: Rabbit) -> None:
    bus = rabbit.bus(groups=["analytics"], retry_delays_s=(0.05, 0.1))
    sent = events(10)
    flaky = sent[4]
    sink = Sink(fail={flaky.id: 1})
    bus.subscribe("analytics", sink)
    await bus.start()
    try:
        await bus.publish(sent)

        await eventually(lambda: _true(len(sink.seen) == 11))
        assert sink.seen.count((flaky.id, 1)) == 1
        assert sink.seen[-1] == (flaky.id, 2)  # from its delay queue, after the rest
        assert [i for i, a in sink.seen if a == 1] == [e.id for e in sent]
        assert await bus.dead_letters(group=None, limit=10) == []
    finally:
        await bus.close()
    assert await ready(rabbit, f"{rabbit.exchange}.analytics") == 0  # the batch was acked


async def test_an_event_of_a_batch_that_always_fails_is_dead_lettered_alone(
    rabbit: Rabbit,
) -> None:
    bus = rabbit.bus(groups=["analytics"], retry_delays_s=(0.05,))
    sent = events(5)
    poison = sent[2]
    sink = Sink(fail={poison.id: 99})
    bus.subscribe("analytics", sink)
    await bus.start()
    try:
        await bus.publish(sent)

        await eventually(lambda: _true(len(sink.seen) == 6))
        await eventually(lambda: _count_is(bus.dead_letter_count(), 1))
        [letter] = await bus.dead_letters(group=None, limit=10)
        assert letter.event == poison
        assert (letter.group, letter.error, letter.attempts) == ("analytics", "boom", 2)
        assert sorted(set(sink.ids())) == sorted(e.id for e in sent)
    finally:
        await bus.close()
    assert await ready(rabbit, f"{rabbit.exchange}.analytics") == 0


async def test_a_consumer_that_stops_mid_batch_loses_nothing(rabbit: Rabbit) -> None:
    publisher = rabbit.bus(groups=["analytics"])
    await publisher.start()
    sent = events(20)
    try:
        await publisher.publish(sent)
        stopping = rabbit.bus(groups=["analytics"])
        refused = Sink(stop_at=sent[7].id)
        stopping.subscribe("analytics", refused)
        await stopping.start()
        await eventually(lambda: _true(len(refused.seen) == 7))
        await stopping.close()  # the half-settled batch was never acked: it goes back whole

        healthy = rabbit.bus(groups=["analytics"])
        sink = Sink()
        healthy.subscribe("analytics", sink)
        await healthy.start()
        try:
            await eventually(lambda: _true(len(sink.seen) == len(sent)))
        finally:
            await healthy.close()
        # at least once: the seven handled before the stop come again (consumers dedupe by id)
        assert refused.ids() == [e.id for e in sent[:7]]
        assert sink.ids() == [e.id for e in sent]
    finally:
        await publisher.close()


async def test_a_malformed_batch_goes_to_the_dlq_and_blocks_nothing(rabbit: Rabbit) -> None:
    bus = rabbit.bus(groups=["analytics"])
    sink = Sink()
    bus.subscribe("analytics", sink)
    await bus.start()
    good = events(2)
    connection = await aio_pika.connect(rabbit.url)
    try:
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(rabbit.exchange)
            for body in (b"[]", b'[{"specversion": "1.0"}]', b'{"not": "a batch"}'):
                await exchange.publish(
                    aio_pika.Message(body, content_type=BATCH), routing_key="PatientCreated"
                )
            await bus.publish(good)

            await eventually(lambda: _true(len(sink.seen) == 2))
            await eventually(lambda: _count_is(bus.dead_letter_count(), 3))
        assert sink.ids() == [e.id for e in good]
        assert await bus.dead_letters(group=None, limit=10) == []  # no event in them to list
    finally:
        await bus.close()


async def test_a_message_holds_at_most_batch_events_of_one_type_in_a_row(rabbit: Rabbit) -> None:
    bus = rabbit.bus(groups=["audit"], batch_events=2)
    await bus.start()
    a, b = events(4), events(1, kind="PatientUpdated")
    try:
        await bus.publish([a[0], a[1], a[2], b[0], a[3]])

        # [a0 a1] [a2] [b0] [a3]: a run ends at the limit and where the type changes
        assert await ready(rabbit, f"{rabbit.exchange}.audit") == 4
    finally:
        await bus.close()


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="rabbitmqctl is not installed")
async def test_a_live_queue_is_bounded_in_bytes_too_since_a_message_may_be_a_batch(
    rabbit: Rabbit,
) -> None:
    bus = RabbitBus(
        rabbit.url,
        clock=SteppingClock(),
        exchange=rabbit.exchange,
        retry_delays_s=(0.05,),
        prefetch=10,
        live_groups=["live-test"],
    )
    bus.subscribe("live-test", Sink())
    await bus.start()
    try:
        listed = await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "-q", "list_queues", "--no-table-headers", "name", "arguments"],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        await bus.close()
    [arguments] = [
        line.split("\t", 1)[1]
        for line in listed.stdout.splitlines()
        if line.startswith(f"{rabbit.exchange}.live-test\t")
    ]
    assert '{"x-max-length",10000}' in arguments
    assert '{"x-max-length-bytes",67108864}' in arguments
    assert '{"x-overflow","drop-head"}' in arguments


async def _count_is(count: object, expected: int) -> bool:
    got = await count if asyncio.iscoroutine(count) else count
    return got == expected


async def test_a_burst_of_backlog_questions_asks_the_broker_once(rabbit: Rabbit) -> None:
    # the intake asks on every message: a relayed batch of 500 finding the count stale made 500
    # channels and passive declares; now they wait for one
    publisher = rabbit.bus(groups=["analytics"], batch_events=100)
    await publisher.start()
    declares: list[str] = []
    ready_in = publisher._ready_in

    async def counted(queue: str) -> int:
        declares.append(queue)
        return await ready_in(queue)

    publisher._ready_in = counted  # type: ignore[method-assign]
    try:
        await publisher.publish(events(150))

        answers = await asyncio.gather(*(publisher.waiting("analytics") for _ in range(200)))

        assert answers == [150] * 200
        assert declares == [f"{rabbit.exchange}.analytics"]
    finally:
        await publisher.close()
