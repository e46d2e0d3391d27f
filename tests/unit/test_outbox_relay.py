"""The outbox relay: publishes committed events, marks them only once confirmed, retries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import event

from healthflow.messaging.events import CloudEvent
from healthflow.messaging.outbox import OutboxRelay
from healthflow.patients import store as patient_schema
from healthflow.patients.domain import NewPatient, Sex
from healthflow.patients.service import PatientService
from healthflow.patients.store import SqlOutbox, SqlPatientStore
from healthflow.ports import Outbox, OutboxEntry, OutboxStats
from healthflow.realtime.fanout import Fanout
from healthflow.realtime.hub import MemoryHub
from healthflow.storage.engine import Database, open_database
from healthflow.vitals import intake_store
from healthflow.vitals.domain import Reading
from healthflow.vitals.events import RecordedReading
from tests.conftest import SteppingClock, audit_trail, ephemeral_cipher, eventually

CIPHER = ephemeral_cipher()
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


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


async def register(
    db: Database, n: int, on_commit: Callable[[Sequence[OutboxEntry]], None] = lambda e: None
) -> None:
    store = SqlPatientStore(db, cipher=CIPHER, audit=await audit_trail(db), on_commit=on_commit)
    service = PatientService(
        store,
        MemoryHub(
            Fanout(replay_size=10, send_queue_size=10, max_clients=1), vitals_min_interval_s=0
        ),
        SteppingClock(),
    )
    for i in range(n):
        await service.register(NewPatient(f"P{i}", "X", date(1990, 1, 1), Sex.OTHER, "A"))


def relay_over(outbox: Outbox, bus: RecordingBus, **options: Any) -> OutboxRelay:
    """A relay polling every 10 ms; `options` are OutboxRelay's (batch size, in flight, ...)."""
    return OutboxRelay(
        outbox,
        bus,  # type: ignore[arg-type]
        SteppingClock(),  # type: ignore[arg-type]
        poll_interval_s=0.01,
        **options,
    )


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[None]:
    task = asyncio.create_task(relay.run())
    try:
        yield
    finally:
        task.cancel()
        await relay.stop()
        await asyncio.gather(task, return_exceptions=True)


async def run_relay(db: Database, bus: RecordingBus, until: int) -> None:
    relay = relay_over(SqlOutbox(db, cipher=CIPHER), bus, batch_size=7, max_in_flight=2)
    async with running(relay):
        await eventually(lambda: _pending_is(db, 0), timeout=20)
        assert len(set(bus.published)) == until


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
    relay = relay_over(
        SqlOutbox(db, cipher=CIPHER), bus, batch_size=10, max_in_flight=1, publish_timeout_s=0.1
    )
    async with running(relay):
        await eventually(lambda: _pending_is(db, 0), timeout=20)
    assert bus.hung and len(bus.published) == 3


class CursorSpy:
    """The telemetry outbox as it is, noting where the relay asks it to read from."""

    def __init__(self, outbox: intake_store.SqlTelemetryOutbox) -> None:
        self.outbox = outbox
        self.asked: list[int] = []
        self.empty = 0

    async def pending(self, *, after_seq: int, limit: int) -> list[OutboxEntry]:
        self.asked.append(after_seq)
        entries = await self.outbox.pending(after_seq=after_seq, limit=limit)
        self.empty += not entries
        return entries

    async def mark_published(self, seqs: Sequence[int], at: datetime) -> None:
        await self.outbox.mark_published(seqs, at)

    async def stats(self) -> OutboxStats:
        return await self.outbox.stats()

    def remember(self, entries: Sequence[OutboxEntry]) -> None:
        self.outbox.remember(entries)


def _readings(first: int, count: int) -> list[RecordedReading]:
    patient = UUID(int=1)
    return [
        RecordedReading(
            f"r{i}", "mon-1", patient, Reading(ts=T0 + timedelta(seconds=i), heart_rate=70.0), T0
        )
        for i in range(first, first + count)
    ]


@pytest.mark.parametrize("rescan", [True, False])
async def test_an_idle_relay_rescans_from_the_oldest_row_only_when_told_to(
    tmp_path: Path, rescan: bool
) -> None:
    db = open_database(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    await db.create_schema(intake_store.intake_metadata)
    spy = CursorSpy(intake_store.SqlTelemetryOutbox(db))
    bus = RecordingBus()
    relay = relay_over(spy, bus, batch_size=100, max_in_flight=1, rescan_when_idle=rescan)
    intake = intake_store.SqlTelemetryIntake(db, on_commit=relay.committed)
    try:
        async with running(relay):
            await intake.accept(_readings(0, 3), [])
            await eventually(lambda: _true(len(bus.published) == 3 and spy.empty > 0))
            asked_before = len(spy.asked)
            await intake.accept(_readings(3, 2), [])
            await eventually(lambda: _true(len(bus.published) == 5))
    finally:
        await db.dispose()
    assert bus.published == [f"r{i}" for i in range(5)]  # each once, in order, either way
    idle_reads = spy.asked[asked_before - 1 :]
    if rescan:
        assert 0 in idle_reads  # back to the oldest unpublished row
    else:
        assert 0 not in idle_reads and min(idle_reads) >= 3  # on from where it was


async def _true(value: bool) -> bool:
    return value


async def test_the_patient_outbox_hands_the_relay_what_the_store_committed(db: Database) -> None:
    outbox = SqlOutbox(db, cipher=CIPHER)
    await register(db, 3, outbox.remember)
    reads: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "patient_events" in statement:
            reads.append(statement)

    event.listen(db.reader.sync_engine, "before_cursor_execute", seen)
    try:
        copied = await outbox.pending(after_seq=0, limit=100)
        assert (len(copied), reads) == (3, [])  # nothing read back, nothing decrypted
        assert await outbox.pending(after_seq=copied[-1].seq, limit=100) == []
        assert len(reads) == 1  # an empty copy cannot say there is nothing: the table is read
    finally:
        event.remove(db.reader.sync_engine, "before_cursor_execute", seen)
    table = await SqlOutbox(db, cipher=CIPHER).pending(after_seq=0, limit=100)
    assert [(e.seq, e.event, e.created_at) for e in copied] == [
        (e.seq, e.event, e.created_at) for e in table
    ]


async def test_a_relay_fed_by_its_store_publishes_every_event_once(db: Database) -> None:
    bus = RecordingBus(failures=1)  # the first publish fails: the rewind reads the table
    relay = relay_over(
        SqlOutbox(db, cipher=CIPHER), bus, batch_size=4, max_in_flight=1, rescan_when_idle=False
    )
    async with running(relay):
        await register(db, 10, relay.committed)
        await eventually(lambda: _pending_is(db, 0), timeout=20)
    assert len(bus.published) == len(set(bus.published)) == 10
