"""SQLAlchemy adapters of the telemetry intake (patient database): devices, the telemetry
outbox and the quarantine. An accepted request commits its readings and its quarantined ones
together; the outbox relay publishes the readings, so nothing answered with 202 is lost if the
process dies before a worker handled it.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from healthflow.messaging.events import CloudEvent
from healthflow.messaging.outbox import CommittedCopy
from healthflow.ports import OutboxEntry, OutboxStats
from healthflow.storage import outbox_rows
from healthflow.storage.bulk_insert import BulkInsert
from healthflow.storage.engine import Database, UtcDateTime
from healthflow.storage.group_commit import GroupCommit
from healthflow.storage.group_read import GroupRead
from healthflow.vitals.domain import Device, DeviceNotFound, DeviceTaken, QuarantinedReading
from healthflow.vitals.events import RecordedReading, vital_signs_recorded

intake_metadata = MetaData()

devices = Table(
    "devices",
    intake_metadata,
    Column("device_id", String(128), primary_key=True),
    Column("kind", String(50), nullable=False),
    Column("patient_id", Uuid, index=True),
    Column("key_hash", String(200), nullable=False),
    Column("registered_at", UtcDateTime, nullable=False),
)
telemetry_outbox = Table(
    "telemetry_outbox",
    intake_metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("device_id", String(128), nullable=False),
    Column("ts", UtcDateTime, nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("published_at", UtcDateTime),
    # the same device reporting the same instant twice is one reading
    UniqueConstraint("device_id", "ts", name="uq_telemetry_outbox_device_ts"),
    Index(
        "ix_telemetry_outbox_unpublished",
        "seq",
        sqlite_where=Column("published_at").is_(None),
        postgresql_where=Column("published_at").is_(None),
    ),
)
quarantine = Table(
    "telemetry_quarantine",
    intake_metadata,
    Column("id", Uuid, primary_key=True),
    Column("device_id", String(128), nullable=False, index=True),
    Column("patient_id", Uuid),
    Column("reason", String(32), nullable=False, index=True),
    Column("field", String(32), nullable=False),
    Column("message", String(500), nullable=False),
    Column("payload", Text, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
)


def _device(row: Any) -> Device:
    return Device(row.device_id, row.kind, row.patient_id, row.registered_at)


# the hot statements built once and bound per call: building `in_(...)` over a batch's values
# anew cost more than running the statement
_DEVICES_BY_ID = select(devices).where(devices.c.device_id.in_(bindparam("ids", expanding=True)))
_PENDING = (
    select(telemetry_outbox.c.seq, telemetry_outbox.c.payload)
    .where(telemetry_outbox.c.published_at.is_(None), telemetry_outbox.c.seq > bindparam("after"))
    .order_by(telemetry_outbox.c.seq)
    .limit(bindparam("limit"))
)


class SqlDeviceRegistry:
    """DeviceRegistry over the patient database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # devices checked at the same time (a burst of MQTT messages from many monitors) are
        # read in one query; every check still reads the table, so a rebinding is seen at once
        self._lookups = GroupRead("devices", read_many=self.get_many)

    async def add(self, device: Device, key_hash: str) -> None:
        try:
            async with self._db.writer.begin() as conn:
                await conn.execute(
                    insert(devices).values(
                        device_id=device.device_id,
                        kind=device.kind,
                        patient_id=device.patient_id,
                        key_hash=key_hash,
                        registered_at=device.registered_at,
                    )
                )
        except IntegrityError as exc:
            raise DeviceTaken(device.device_id) from exc

    async def get(self, device_id: str) -> tuple[Device, str] | None:
        return await self._lookups.get(device_id)

    async def get_many(self, device_ids: Sequence[str]) -> dict[str, tuple[Device, str]]:
        async with self._db.reader.connect() as conn:
            rows = await conn.execute(_DEVICES_BY_ID, {"ids": list(device_ids)})
            return {row.device_id: (_device(row), row.key_hash) for row in rows}

    async def bind(self, device_id: str, patient_id: UUID | None) -> Device:
        async with self._db.writer.begin() as conn:
            result = await conn.execute(
                update(devices)
                .where(devices.c.device_id == device_id)
                .values(patient_id=patient_id)
            )
            if result.rowcount != 1:
                raise DeviceNotFound(device_id)
            row = (
                await conn.execute(select(devices).where(devices.c.device_id == device_id))
            ).one()
        return _device(row)

    async def list(self, *, patient_id: UUID | None, limit: int) -> list[Device]:
        query = select(devices).order_by(devices.c.registered_at, devices.c.device_id).limit(limit)
        if patient_id is not None:
            query = query.where(devices.c.patient_id == patient_id)
        async with self._db.reader.connect() as conn:
            return [_device(r) for r in (await conn.execute(query)).all()]


@dataclass(frozen=True)
class _Intake:
    accepted: tuple[RecordedReading, ...]
    quarantined: tuple[QuarantinedReading, ...]


class SqlTelemetryIntake:
    """TelemetryIntake over the patient database.

    `on_commit` gets the outbox entries of each commit's new readings, in sequence order: the
    telemetry outbox keeps them for its relay (`SqlTelemetryOutbox.remember`), which is woken.
    """

    def __init__(
        self,
        db: Database,
        *,
        on_commit: Callable[[Sequence[OutboxEntry]], None] = lambda entries: None,
        backlog_limit: int = 10_000,
        recount_after_s: float = 0.05,
    ) -> None:
        self._db = db
        # the backlog is asked for on every request (and MQTT message): counted in the database
        # at most every `recount_after_s`, with this process's accepted readings added between
        self._recount_after = recount_after_s
        self._counted = 0
        self._counted_at = -math.inf
        self._accepted_since = 0
        # one count at a time: a burst of messages finding the count stale waits for one query
        self._recount: asyncio.Task[None] | None = None
        # requests arriving together (many devices, MQTT messages) commit together
        self._requests = GroupCommit[_Intake, int](
            "telemetry.intake", write_batch=self._accept_many, write_one=self._accept_one
        )
        # counting stops at the limit: the question is only whether the backlog reached it
        unpublished = (
            select(telemetry_outbox.c.seq)
            .where(telemetry_outbox.c.published_at.is_(None))
            .limit(backlog_limit)
            .subquery()
        )
        self._count_backlog = select(func.count()).select_from(unpublished)
        # a reading stored before (same device and instant) is skipped by the insert itself,
        # so one statement both stores the new ones and tells the repeats
        self._insert_reading = BulkInsert(
            telemetry_outbox,
            skip_conflicts=True,
            columns=("event_id", "device_id", "ts", "payload", "created_at"),
            returning=("event_id", "seq"),
        )
        self._on_commit = on_commit

    async def accept(
        self, accepted: Sequence[RecordedReading], quarantined: Sequence[QuarantinedReading]
    ) -> int:
        return await self._requests.submit(_Intake(tuple(accepted), tuple(quarantined)))

    async def _accept_many(self, requests: Sequence[_Intake]) -> list[int]:
        """Requests that arrived together, in one transaction; per request, its repeats."""
        accepted = [r for request in requests for r in request.accepted]
        quarantined = [q for request in requests for q in request.quarantined]
        events = [vital_signs_recorded(r) for r in accepted]
        async with self._db.writer.begin() as conn:
            stored: dict[str, int] = {}  # event id -> seq of the readings this commit stores
            if accepted:
                rows = [
                    (event.id, r.device_id, r.reading.ts, event.to_json().decode(), r.received_at)
                    for r, event in zip(accepted, events, strict=True)
                ]
                stored = dict(await self._insert_reading.run_returning(conn, rows))
            if quarantined:
                await conn.execute(
                    insert(quarantine),
                    [
                        {
                            "id": q.id,
                            "device_id": q.device_id,
                            "patient_id": q.patient_id,
                            "reason": q.reason,
                            "field": q.field,
                            "message": q.message[:500],
                            "payload": orjson.dumps(q.payload).decode(),
                            "received_at": q.received_at,
                        }
                        for q in quarantined
                    ],
                )
        if stored:
            self._accepted_since += len(stored)
            # a reading's event time is when it was received, its row's created_at
            entries = [OutboxEntry(stored[e.id], e, e.time) for e in events if e.id in stored]
            entries.sort(key=lambda entry: entry.seq)
            self._on_commit(entries)
        return [sum(r.reading_id not in stored for r in request.accepted) for request in requests]

    async def accept_many(
        self, requests: Sequence[tuple[Sequence[RecordedReading], Sequence[QuarantinedReading]]]
    ) -> list[int]:
        repeats: list[int] = []
        for outcome in await self._requests.submit_many(
            [_Intake(tuple(accepted), tuple(quarantined)) for accepted, quarantined in requests]
        ):
            if isinstance(outcome, BaseException):
                raise outcome
            repeats.append(outcome)
        return repeats

    async def _accept_one(self, request: _Intake) -> int:
        (repeats,) = await self._accept_many([request])
        return repeats

    async def backlog(self) -> int:
        if time.monotonic() - self._counted_at >= self._recount_after:
            if self._recount is None or self._recount.done():
                # its own task: a caller that gives up does not cancel the others' count
                self._recount = asyncio.create_task(
                    self._count(), name="telemetry.backlog", context=contextvars.Context()
                )
            await asyncio.shield(self._recount)
        return self._counted + self._accepted_since

    async def _count(self) -> None:
        async with self._db.reader.connect() as conn:
            counted = int(await conn.scalar(self._count_backlog) or 0)
        self._counted, self._counted_at, self._accepted_since = counted, time.monotonic(), 0

    async def quarantined(
        self, *, device_id: str | None, reason: str | None, before: UUID | None, limit: int
    ) -> list[QuarantinedReading]:
        query = select(quarantine).order_by(quarantine.c.id.desc()).limit(limit)
        if device_id is not None:
            query = query.where(quarantine.c.device_id == device_id)
        if reason is not None:
            query = query.where(quarantine.c.reason == reason)
        if before is not None:
            query = query.where(quarantine.c.id < before)
        async with self._db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            QuarantinedReading(
                r.id,
                r.device_id,
                r.patient_id,
                r.reason,
                r.field,
                r.message,
                orjson.loads(r.payload),
                r.received_at,
            )
            for r in rows
        ]


class SqlTelemetryOutbox:
    """The Outbox port over telemetry_outbox, so the core OutboxRelay publishes readings.

    The intake hands over what each commit stored (`remember`): while it continues the relay's
    cursor, `pending` returns that copy instead of reading the rows back and parsing their JSON
    again (`messaging.outbox.CommittedCopy`).
    """

    def __init__(self, db: Database, *, keep: int = 10_000) -> None:
        self._db = db
        self._copy = CommittedCopy(keep=keep)
        self._mark_published = outbox_rows.MarkPublished(
            db, telemetry_outbox, name="telemetry.outbox.marks"
        )

    def remember(self, entries: Sequence[OutboxEntry]) -> None:
        self._copy.remember(entries)

    async def pending(self, *, after_seq: int, limit: int) -> list[OutboxEntry]:
        if entries := self._copy.take(after_seq=after_seq, limit=limit):
            return entries
        async with self._db.reader.connect() as conn:
            rows = (await conn.execute(_PENDING, {"after": after_seq, "limit": limit})).all()
        # a reading's event time is when it was received, which is its row's created_at: taken
        # from the event, the column need not be read and parsed again for every row
        entries = []
        for row in rows:
            event = CloudEvent.from_json(row.payload)
            entries.append(OutboxEntry(row.seq, event, event.time))
        return entries

    async def mark_published(self, seqs: Sequence[int], at: datetime) -> None:
        await self._mark_published(seqs, at)

    async def stats(self) -> OutboxStats:
        t = telemetry_outbox
        query = select(func.count(), func.min(t.c.created_at)).where(t.c.published_at.is_(None))
        async with self._db.reader.connect() as conn:
            row = (await conn.execute(query)).one()
        oldest = row[1]
        if isinstance(oldest, str):  # SQLite's min() hands back the stored text
            oldest = datetime.fromisoformat(oldest)
        return OutboxStats(int(row[0]), oldest)
