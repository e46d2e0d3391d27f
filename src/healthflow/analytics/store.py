"""The analytics document store with incrementally maintained rollups (SQLAlchemy)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import (
    Column,
    Date,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from healthflow.analytics.projections import Effect, PatientState, project
from healthflow.messaging.events import CloudEvent
from healthflow.patients.domain import Status
from healthflow.ports import Check
from healthflow.storage.engine import Database, UtcDateTime

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("type", String(64), nullable=False, index=True),
    Column("subject", String(64), nullable=False, index=True),
    Column("time", UtcDateTime, nullable=False),
    Column("document", Text, nullable=False),
    Column("processed_at", UtcDateTime, nullable=False),
)
patient_states = Table(
    "patient_states",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("ward", String(50), nullable=False),
    Column("status", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("registered_at", UtcDateTime, nullable=False),
    Column("treated_at", UtcDateTime),
)
daily_counts = Table(
    "daily_counts",
    metadata,
    Column("day", Date, primary_key=True),
    Column("metric", String(32), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
)
daily_waits = Table(
    "daily_waits",
    metadata,
    Column("day", Date, primary_key=True),
    Column("total_minutes", Float, nullable=False),
    Column("count", Integer, nullable=False),
)
status_counts = Table(
    "status_counts",
    metadata,
    Column("status", String(16), primary_key=True),
    Column("value", Integer, nullable=False),
)
totals = Table(
    "totals",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)


def state_row(state: PatientState) -> dict[str, Any]:
    """A patient_states row: what dataclasses.asdict gives for these flat fields, without its
    deep copy of each value (the bench's seeding writes the same rows)."""
    return {
        "patient_id": state.patient_id,
        "ward": state.ward,
        "status": state.status,
        "version": state.version,
        "registered_at": state.registered_at,
        "treated_at": state.treated_at,
    }


class SqlAnalyticsStore:
    """AnalyticsStore over SQLAlchemy: SQLite by default, PostgreSQL by URL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        insert = postgresql.insert if db.backend == "postgresql" else sqlite.insert
        # Statements are built once and take their values as parameters, so SQLAlchemy compiles
        # each a single time instead of once per event.
        self._insert_event = (
            insert(events).on_conflict_do_nothing(index_elements=["id"]).returning(events.c.id)
        )
        # the batch's states, with its patients bound per call: building `in_(...)` anew per
        # batch costs more than the query where registrations arrive a few at a time
        self._states = select(patient_states).where(
            patient_states.c.patient_id.in_(bindparam("patients", expanding=True))
        )
        state = insert(patient_states)
        self._upsert_state = state.on_conflict_do_update(
            index_elements=["patient_id"],
            set_={c.name: state.excluded[c.name] for c in patient_states.c if not c.primary_key},
        )
        self._add: dict[str, Any] = {}
        for table in (totals, status_counts, daily_counts, daily_waits):
            stmt = insert(table)
            self._add[table.name] = stmt.on_conflict_do_update(
                index_elements=[c.name for c in table.primary_key],
                set_={c.name: c + stmt.excluded[c.name] for c in table.c if not c.primary_key},
            )

    async def record(self, event: CloudEvent, *, processed_at: datetime) -> bool:
        (first,) = await self.record_many([event], processed_at=processed_at)
        return first

    async def record_many(
        self, batch: Sequence[CloudEvent], *, processed_at: datetime
    ) -> list[bool]:
        """Store a batch and its rollup changes in one transaction; per event, True if new."""
        async with self._db.writer.begin() as conn:
            inserted = await conn.execute(
                self._insert_event,
                [
                    {
                        "id": e.id,
                        "type": e.type,
                        "subject": e.subject,
                        "time": e.time,
                        "document": _deidentified(e),
                        "processed_at": processed_at,
                    }
                    for e in batch
                ],
            )
            new_ids = set(inserted.scalars())
            # an id delivered before, or twice in this batch, has no second effect
            firsts: list[bool] = []
            for e in batch:
                firsts.append(e.id in new_ids)
                new_ids.discard(e.id)
            fresh = [e for e, first in zip(batch, firsts, strict=True) if first]
            if fresh:
                await self._apply(conn, fresh)
        return firsts

    async def _apply(self, conn: AsyncConnection, fresh: list[CloudEvent]) -> None:
        subjects = {e.subject for e in fresh}
        rows = await conn.execute(self._states, {"patients": list(subjects)})
        states: dict[str, PatientState | None] = {
            r.patient_id: PatientState(
                r.patient_id, r.ward, r.status, r.version, r.registered_at, r.treated_at
            )
            for r in rows
        }
        changed: dict[str, PatientState] = {}
        adds: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = defaultdict(dict)

        def add(table: str, keys: dict[str, Any], **amounts: float) -> None:
            row = adds[table].setdefault(
                tuple(keys.values()), {**keys, **dict.fromkeys(amounts, 0)}
            )
            for column, amount in amounts.items():
                row[column] += amount

        # one patient's events apply in batch order, so the batch equals one-by-one handling
        for event in fresh:
            effect: Effect = project(event, states.get(event.subject))
            if effect.state is not None:
                states[event.subject] = changed[event.subject] = effect.state
            add("totals", {"name": "events"}, value=1)
            if effect.new_patient:
                add("totals", {"name": "patients"}, value=1)
            for status, n in effect.status_delta.items():
                add("status_counts", {"status": status}, value=n)
            for (day, metric, name), n in effect.daily.items():
                add("daily_counts", {"day": day, "metric": metric, "key": name}, value=n)
            if effect.wait is not None:
                add("daily_waits", {"day": effect.wait[0]}, total_minutes=effect.wait[1], count=1)
        if changed:
            await conn.execute(self._upsert_state, [state_row(st) for st in changed.values()])
        for table, by_key in adds.items():
            await conn.execute(self._add[table], list(by_key.values()))

    async def dashboard(self, *, first_day: date, last_day: date) -> dict[str, Any]:
        async with self._db.reader.connect() as conn:
            total_rows: dict[str, int] = {
                r.name: r.value for r in await conn.execute(select(totals))
            }
            by_status: dict[str, int] = {
                r.status: r.value for r in await conn.execute(select(status_counts))
            }
            daily = (
                await conn.execute(
                    select(daily_counts).where(daily_counts.c.day.between(first_day, last_day))
                )
            ).all()
            waits = (
                await conn.execute(
                    select(daily_waits).where(daily_waits.c.day.between(first_day, last_day))
                )
            ).all()
        days = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
        registrations = dict.fromkeys(days, 0)
        events_by_day: dict[date, dict[str, int]] = {d: {} for d in days}
        for row in daily:
            if row.metric == "registrations":
                registrations[row.day] = row.value
            elif row.metric == "events":
                events_by_day[row.day][row.key] = row.value
        wait_count = sum(int(r._mapping["count"]) for r in waits)
        average_wait = (
            round(sum(r.total_minutes for r in waits) / wait_count, 2) if wait_count else None
        )
        patients_by_status = {s.value: int(by_status.get(s.value, 0)) for s in Status}
        return {
            "patients_total": int(total_rows.get("patients", 0)),
            "patients_by_status": patients_by_status,
            "registrations_by_day": [
                {"day": d.isoformat(), "count": n} for d, n in registrations.items()
            ],
            "events_by_type_by_day": [
                {"day": d.isoformat(), "counts": c} for d, c in events_by_day.items()
            ],
            "critical_now": patients_by_status[Status.CRITICAL.value],
            "average_wait_minutes": average_wait,
            "waits_counted": wait_count,
            "events_processed_total": int(total_rows.get("events", 0)),
        }

    async def ward_of(self, patient_id: UUID) -> str | None:
        query = select(patient_states.c.ward).where(patient_states.c.patient_id == str(patient_id))
        async with self._db.reader.connect() as conn:
            ward = await conn.scalar(query)
        return str(ward) if ward is not None else None

    async def document(self, event_id: str) -> dict[str, Any] | None:
        async with self._db.reader.connect() as conn:
            doc = await conn.scalar(select(events.c.document).where(events.c.id == event_id))
        return orjson.loads(doc) if doc else None

    async def check(self) -> Check:
        return await self._db.check()


def _deidentified(event: CloudEvent) -> str:
    """The stored document: the event without free text, which may name anyone."""
    data = {k: v for k, v in event.data.items() if k != "reason"}
    return orjson.dumps({**event.to_dict(), "data": data}).decode()
