"""The outbox relay: publishes committed events, marks them only once confirmed, retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path

import pytest

from healthflow.messaging.events import CloudEvent
from healthflow.messaging.outbox import OutboxRelay
from healthflow.patients import store as patient_schema
from healthflow.patients.domain import NewPatient, Sex
from healthflow.patients.service import PatientService
from healthflow.patients.store import SqlOutbox, SqlPatientStore
from healthflow.realtime.fanout import Fanout
from healthflow.realtime.hub import MemoryHub
from healthflow.storage.engine import Database, open_database
from tests.conftest import SteppingClock, audit_trail, ephemeral_cipher, eventually

CIPHER = ephemeral_cipher()


class RecordingBus:
    """An EventBus double that confirms or fails publishes on command."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.published: list[str] = []

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker unreachable")
        self.published.extend(e.id for e in events)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = open_database(f"sqlite+aiosqlite:///{tmp_path}/p.db")
    await database.create_schema(patient_schema.metadata)
    yield database
    await database.dispose()


async def register(db: Database, n: int) -> None:
    service = PatientService(
        SqlPatientStore(db, cipher=CIPHER, audit=await audit_trail(db)),
        MemoryHub(
            Fanout(replay_size=10, send_queue_size=10, max_clients=1), vitals_min_interval_s=0
        ),
        SteppingClock(),
    )
    for i in range(n):
        await service.register(NewPatient(f"P{i}", "X", date(1990, 1, 1), Sex.OTHER, "A"))


async def run_relay(db: Database, bus: RecordingBus, until: int) -> None:
    relay = OutboxRelay(
        SqlOutbox(db, cipher=CIPHER),
        bus,
        SteppingClock(),  # type: ignore[arg-type]
        batch_size=7,
        poll_interval_s=0.01,
        max_in_flight=2,
    )
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: _pending_is(db, 0), timeout=20)
        assert len(set(bus.published)) == until
    finally:
        task.cancel()
        await relay.stop()
        await asyncio.gather(task, return_exceptions=True)


async def _pending_is(db: Database, n: int) -> bool:
    return (await SqlOutbox(db, cipher=CIPHER).stats()).pending == n


async def test_relay_publishes_every_committed_event_and_marks_it(db: Database) -> None:
    await register(db, 20)
    assert (await SqlOutbox(db, cipher=CIPHER).stats()).pending == 20
    bus = RecordingBus()
    await run_relay(db, bus, until=20)
    stats = await SqlOutbox(db, cipher=CIPHER).stats()
    assert (stats.pending, stats.oldest_created_at) == (0, None)


async def test_relay_retries_after_a_failed_publish_and_loses_nothing(db: Database) -> None:
    await register(db, 15)
    bus = RecordingBus(failures=2)
    await run_relay(db, bus, until=15)


async def test_a_new_relay_publishes_what_an_earlier_one_left_unconfirmed(db: Database) -> None:
    await register(db, 5)
    outbox = SqlOutbox(db, cipher=CIPHER)
    first = await outbox.pending(after_seq=0, limit=2)
    await outbox.mark_published([e.seq for e in first], SteppingClock().now())
    bus = RecordingBus()
    await run_relay(db, bus, until=3)
    assert set(bus.published).isdisjoint({e.event.id for e in first})


async def test_outbox_stats_report_the_oldest_unpublished_row(db: Database) -> None:
    await register(db, 2)
    stats = await SqlOutbox(db, cipher=CIPHER).stats()
    assert stats.pending == 2
    assert stats.oldest_created_at == SteppingClock().now()


class SilentBus(RecordingBus):
    """Never confirms its first publish, as a bus whose consumer hung would."""

    def __init__(self) -> None:
        super().__init__()
        self.hung = False

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        if not self.hung:
            self.hung = True
            await asyncio.Event().wait()
        await super().publish(events)


async def test_a_publish_never_confirmed_times_out_and_is_sent_again(db: Database) -> None:
    await register(db, 3)
    bus = SilentBus()
    relay = OutboxRelay(
        SqlOutbox(db, cipher=CIPHER),
        bus,
        SteppingClock(),  # type: ignore[arg-type]
        batch_size=10,
        poll_interval_s=0.01,
        max_in_flight=1,
        publish_timeout_s=0.1,
    )
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: _pending_is(db, 0), timeout=20)
    finally:
        task.cancel()
        await relay.stop()
        await asyncio.gather(task, return_exceptions=True)
    assert bus.hung and len(bus.published) == 3
