"""RabbitMQ under failure: a lost connection or a consumer that dies mid-stream loses nothing,
and the dedupe by event id keeps the effect to exactly once."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aio_pika
import pytest
from aio_pika.exceptions import AMQPConnectionError

from healthflow.analytics.store import SqlAnalyticsStore
from healthflow.ids import uuid7
from healthflow.messaging.events import CloudEvent
from healthflow.messaging.rabbitmq import RabbitBus
from healthflow.messaging.worker import WorkerPool
from healthflow.patients import events as patient_events
from healthflow.patients.domain import NewPatient, Patient, Sex
from healthflow.ports import Delivery
from healthflow.storage import migrations
from healthflow.storage.engine import Database
from tests.conftest import SteppingClock, eventually
from tests.integration.conftest import Rabbit, migrated

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def registrations(count: int) -> list[CloudEvent]:
    out = []
    for n in range(count):
        at = T0 + timedelta(milliseconds=n)
        new = NewPatient("Ada", "Lovelace", date(1980, 1, 1), Sex.FEMALE, "ICU")
        patient = Patient.register(new, patient_id=uuid7(at), mrn=f"M{n}", at=at)
        out.append(patient_events.created(patient))
    return out


@dataclass
class Effects:
    """A real analytics store as the handler's effect, plus how often the handler ran."""

    store: SqlAnalyticsStore
    calls: int = 0
    hold_after: int | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, event: CloudEvent) -> None:
        self.calls += 1
        if self.hold_after is not None and self.calls > self.hold_after:
            await self.released.wait()  # in the middle of handling when the stream is cut
        await self.store.record(event, processed_at=T0)

    async def processed(self) -> int:
        summary = await self.store.dashboard(first_day=T0.date(), last_day=T0.date())
        return int(summary["events_processed_total"])


@pytest.fixture
async def analytics_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = await migrated(f"sqlite+aiosqlite:///{tmp_path}/a.db", migrations.ANALYTICS)
    yield db
    await db.dispose()


def close_connection(name: str) -> None:
    """Make the broker drop one client connection, found by its connection_name."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pids = [
        line.split("\t", 1)[0]
        for line in listing.splitlines()
        if f'{{"connection_name","{name}"}}' in line
    ]
    assert pids, f"no broker connection named {name}: {listing!r}"
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "-q", "close_connection", pid, "test: connection cut"], check=True
        )


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="rabbitmqctl is not installed")
async def test_a_connection_cut_mid_stream_loses_nothing(
    rabbit: Rabbit, analytics_db: Database
) -> None:
    effects = Effects(SqlAnalyticsStore(analytics_db), hold_after=40)
    consumer_name = f"{rabbit.exchange}-consumer"
    publisher = rabbit.bus(groups=["analytics"], connection_name=f"{rabbit.exchange}-publisher")
    consumer = rabbit.bus(groups=["analytics"], prefetch=10, connection_name=consumer_name)
    pool = WorkerPool("analytics", effects.handle, workers=4, capacity=40)
    consumer.subscribe("analytics", pool.submit)
    pool.start()
    await consumer.start()
    await publisher.start()
    sent = registrations(300)
    try:
        await publisher.publish(sent)
        await eventually(lambda: _at_least(effects.calls, 41))  # one held mid-handling

        await asyncio.to_thread(close_connection, consumer_name)
        assert await effects.processed() < len(sent)
        effects.released.set()

        await eventually(lambda: _equals(effects.processed(), len(sent)), timeout=60)
        assert effects.calls > len(sent)  # the held ones came again and were deduplicated
        assert (await consumer.check()).up
    finally:
        await pool.stop(1.0)
        await consumer.close()
        await publisher.close()


async def test_a_consumer_that_dies_before_finishing_gets_its_messages_redelivered(
    rabbit: Rabbit, analytics_db: Database
) -> None:
    effects = Effects(SqlAnalyticsStore(analytics_db))
    publisher = rabbit.bus(groups=["analytics"])
    stuck = rabbit.bus(groups=["analytics"], prefetch=5)
    started = asyncio.Event()
    never = asyncio.Event()

    async def hangs(event: CloudEvent) -> None:
        started.set()
        await never.wait()  # the process "dies" while handling: nothing may have been acked

    dying = WorkerPool("analytics", hangs, workers=1, capacity=5)
    stuck.subscribe("analytics", dying.submit)
    dying.start()
    await stuck.start()
    await publisher.start()
    sent = registrations(20)
    try:
        await publisher.publish(sent)
        await started.wait()
        await dying.stop(0.0)
        await stuck.close()  # the connection goes; the broker requeues every unacked message

        healthy = rabbit.bus(groups=["analytics"])
        pool = WorkerPool("analytics", effects.handle, workers=2, capacity=20)
        healthy.subscribe("analytics", pool.submit)
        pool.start()
        await healthy.start()
        try:
            await eventually(lambda: _equals(effects.processed(), len(sent)), timeout=30)
            assert await healthy.dead_letters(group=None, limit=10) == []
        finally:
            await pool.stop(1.0)
            await healthy.close()
    finally:
        await publisher.close()


async def test_publishing_with_no_queue_bound_fails_instead_of_dropping(rabbit: Rabbit) -> None:
    publisher = rabbit.bus(groups=[])  # declares no consumer queue: nothing would receive it
    await publisher.start()
    try:
        with pytest.raises(Exception, match=r"(?i)unroutable|NO_ROUTE|returned"):
            await publisher.publish(registrations(1))
    finally:
        await publisher.close()


async def _at_least(value: int, floor: int) -> bool:
    return value >= floor


async def _equals(value: object, expected: int) -> bool:
    got = await value if asyncio.iscoroutine(value) else value
    return got == expected


async def test_a_message_that_is_not_a_cloudevent_goes_to_the_dlq_and_blocks_nothing(
    rabbit: Rabbit,
) -> None:
    bus = rabbit.bus(groups=["analytics"])
    seen: list[str] = []

    async def sink(delivery: Delivery) -> None:
        seen.append(delivery.event.id)
        await delivery.ack()

    bus.subscribe("analytics", sink)
    await bus.start()
    [good] = registrations(1)
    connection = await aio_pika.connect(rabbit.url)
    try:
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(rabbit.exchange)
            await exchange.publish(aio_pika.Message(b"{not json"), routing_key="PatientCreated")
            await bus.publish([good])
            await eventually(lambda: _equals(len(seen), 1))

            async def in_dlq() -> bool:
                dlq = await channel.declare_queue(bus.dead_letter_queue, passive=True)
                return dlq.declaration_result.message_count == 1

            await eventually(in_dlq)
        assert seen == [good.id]
        assert await bus.dead_letters(group=None, limit=10) == []  # not an event: not listed
    finally:
        await bus.close()


async def test_a_broker_that_never_answers_fails_the_start_after_retrying() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bus = RabbitBus(
        f"amqp://guest:guest@127.0.0.1:{port}/",
        clock=SteppingClock(),
        exchange="unused",
        retry_delays_s=(1.0,),
        prefetch=1,
        connect_timeout_s=0.5,
    )
    with pytest.raises((ConnectionError, OSError, AMQPConnectionError)):
        await bus.start()
    assert not (await bus.check()).up
