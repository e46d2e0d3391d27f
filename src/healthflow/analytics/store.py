"""The analytics document store with incrementally maintained rollups (SQLAlchemy)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

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


class SqlAnalyticsStore:
    """AnalyticsStore over SQLAlchemy: SQLite by default, PostgreSQL by URL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._insert = postgresql.insert if db.backend == "postgresql" else sqlite.insert

    async def record(self, event: CloudEvent, *, processed_at: datetime) -> bool:
        async with self._db.writer.begin() as conn:
            inserted = await conn.execute(
                self._insert(events)
                .values(
                    id=event.id,
                    type=event.type,
                    subject=event.subject,
                    time=event.time,
                    document=_deidentified(event),
                    processed_at=processed_at,
                )
                .on_conflict_do_nothing(index_elements=["id"])
            )
            if inserted.rowcount == 0:
                return False  # delivered before: the effect is already stored
            current = await self._state(conn, event.subject)
            await self._apply(conn, project(event, current))
        return True

    async def _state(self, conn: AsyncConnection, patient_id: str) -> PatientState | None:
        row = (
            await conn.execute(
                select(patient_states).where(patient_states.c.patient_id == patient_id)
            )
        ).first()
        if row is None:
            return None
        return PatientState(
            row.patient_id, row.ward, row.status, row.version, row.registered_at, row.treated_at
        )

    async def _apply(self, conn: AsyncConnection, effect: Effect) -> None:
        if effect.state is not None:
            values: dict[str, Any] = {
                "patient_id": effect.state.patient_id,
                "ward": effect.state.ward,
                "status": effect.state.status,
                "version": effect.state.version,
                "registered_at": effect.state.registered_at,
                "treated_at": effect.state.treated_at,
            }
            stmt = self._insert(patient_states).values(values)
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["patient_id"], set_=values)
            )
        increments: list[tuple[Table, dict[str, Any], dict[str, float]]] = []
        if effect.new_patient:
            increments.append((totals, {"name": "patients"}, {"value": 1}))
        increments.append((totals, {"name": "events"}, {"value": 1}))
        for status, change in effect.status_delta.items():
            increments.append((status_counts, {"status": status}, {"value": change}))
        for (day, metric, name), change in effect.daily.items():
            increments.append(
                (daily_counts, {"day": day, "metric": metric, "key": name}, {"value": change})
            )
        if effect.wait is not None:
            day, minutes = effect.wait
            increments.append((daily_waits, {"day": day}, {"total_minutes": minutes, "count": 1}))
        for table, keys, adds in increments:
            stmt = self._insert(table).values({**keys, **adds})
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=list(keys),
                    set_={col: table.c[col] + stmt.excluded[col] for col in adds},
                )
            )

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
