"""On PostgreSQL an outbox row can commit after a row with a higher sequence number; the relay
must still publish it (SQLite's single writer never shows this)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from healthflow.ids import uuid7
from healthflow.messaging.events import CloudEvent
from healthflow.messaging.outbox import OutboxRelay
from healthflow.patients.store import SqlOutbox, patient_events
from healthflow.ports import Check, DeadLetter, Sink
from healthflow.storage import migrations
from tests.conftest import SteppingClock, ephemeral_cipher, eventually
from tests.integration.conftest import migrated

pytestmark = pytest.mark.integration


class RecordingBus:
    """An EventBus fake that confirms every publish at once and remembers the ids."""

    def __init__(self) -> None:
        self.published: list[str] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        self.published.extend(e.id for e in events)

    def subscribe(self, group: str, sink: Sink, *, types: object = None) -> None: ...

    async def dead_letters(self, *, group: str | None, limit: int) -> list[DeadLetter]:
        return []

    async def dead_letter_count(self) -> int:
        return 0

    async def check(self) -> Check:
        return Check(True)


def row(n: int) -> dict[str, object]:
    now = datetime(2026, 11, 25, 9, n, tzinfo=UTC)
    event = CloudEvent(str(uuid7(now)), "/t", "PatientCreated", now, str(uuid7(now)), {"n": n})
    return {
        "id": event.id,
        "patient_id": uuid7(now),
        "type": event.type,
        "payload": event.to_json().decode(),
        "created_at": now,
    }


async def test_a_row_committed_behind_the_cursor_is_still_published(postgres_url: str) -> None:
    db = await migrated(postgres_url, migrations.PATIENTS)
    bus = RecordingBus()
    relay = OutboxRelay(
        SqlOutbox(db, cipher=ephemeral_cipher()),
        bus,
        SteppingClock(),
        batch_size=10,
        poll_interval_s=0.05,
        max_in_flight=2,
    )
    late, early = row(1), row(2)
    task = asyncio.create_task(relay.run())
    try:
        async with db.writer.connect() as slow:
            slow_tx = await slow.begin()
            await slow.execute(insert(patient_events).values(late))  # takes the lower seq
            async with db.writer.begin() as fast:
                await fast.execute(insert(patient_events).values(early))
            await eventually(lambda: _has(bus, early["id"]))
            await slow_tx.commit()  # now visible, behind the relay's cursor

        await eventually(lambda: _has(bus, late["id"]))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await relay.stop()
        await db.dispose()


async def _has(bus: RecordingBus, event_id: object) -> bool:
    return event_id in bus.published
