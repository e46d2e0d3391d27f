"""SQLAlchemy adapter of the vitals series (analytics database): the readings, each patient's
NEWS2 state and the alerts, written together per reading so its effect is stored exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    and_,
    bindparam,
    cast,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from healthflow.ports import Check
from healthflow.storage.bulk_insert import BulkInsert
from healthflow.storage.engine import Database, UtcDateTime
from healthflow.vitals import metrics
from healthflow.vitals.alerts import Alert, AlertChange, AlertChanged, AlertStatus, Severity
from healthflow.vitals.assessment import Assessment, PatientVitals
from healthflow.vitals.events import RecordedReading
from healthflow.vitals.news2 import Risk
from healthflow.vitals.ports import Decide, LatestNews2, Outcome, StoredReading

series_metadata = MetaData()

vitals = Table(
    "vitals",
    series_metadata,
    Column("id", String(36), primary_key=True),
    Column("patient_id", Uuid, nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("ts", UtcDateTime, nullable=False),
    Column("measurements", Text, nullable=False),
    Column("assessment", Text),
    Column("alert_id", Uuid),
    Column("alert_change", String(16)),
    Column("received_at", UtcDateTime, nullable=False),
    UniqueConstraint("device_id", "ts", name="uq_vitals_device_ts"),
    Index("ix_vitals_patient_ts", "patient_id", "ts"),
)
patient_vitals = Table(
    "patient_vitals",
    series_metadata,
    Column("patient_id", Uuid, primary_key=True),
    Column("state", Text, nullable=False),
    # the patient's ward at the last reading: lets a ward's board ask for its patients' NEWS2
    Column("ward", String(50)),
    Index("ix_patient_vitals_ward", "ward", "patient_id"),
)
alerts = Table(
    "alerts",
    series_metadata,
    Column("id", Uuid, primary_key=True),
    Column("patient_id", Uuid, nullable=False),
    Column("ward", String(50), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("score", Integer, nullable=False),
    Column("risk", String(16), nullable=False),
    Column("peak_score", Integer, nullable=False),
    Column("readings", Integer, nullable=False),
    Column("calm_readings", Integer, nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("acknowledged_by", String(100)),
    Column("acknowledged_at", UtcDateTime),
    Column("resolved_at", UtcDateTime),
    Column("version", Integer, nullable=False),
    Index("ix_alerts_patient_status", "patient_id", "status"),
    Index("ix_alerts_status_severity", "status", "severity", "opened_at"),
    # the dashboard's alerts per day: a range over opened_at, grouped by day and severity
    Index("ix_alerts_opened_at", "opened_at", "severity"),
)


def _dialect_insert(db: Database) -> Any:
    return postgresql.insert if db.backend == "postgresql" else sqlite.insert


def _state_to_json(state: PatientVitals) -> str:
    # orjson writes the (value, instant) pairs, the instants and the Assessment dataclass itself,
    # byte for byte what `[v, at.isoformat()]` and `Assessment.to_dict()` give, at a fifth of
    # the cost (a state is written per patient per batch)
    return orjson.dumps(
        {"latest": state.latest, "spo2_scale": state.spo2_scale, "assessment": state.assessment}
    ).decode()


def _state_from_json(text: str) -> PatientVitals:
    raw = orjson.loads(text)
    return PatientVitals(
        latest={k: (v, datetime.fromisoformat(at)) for k, (v, at) in raw["latest"].items()},
        spo2_scale=int(raw["spo2_scale"]),
        assessment=Assessment.from_dict(raw["assessment"]) if raw["assessment"] else None,
    )


def _alert_row(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "patient_id": alert.patient_id,
        "ward": alert.ward,
        "severity": alert.severity.value,
        "status": alert.status.value,
        "score": alert.score,
        "risk": alert.risk.value,
        "peak_score": alert.peak_score,
        "readings": alert.readings,
        "calm_readings": alert.calm_readings,
        "opened_at": alert.opened_at,
        "updated_at": alert.updated_at,
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": alert.acknowledged_at,
        "resolved_at": alert.resolved_at,
        "version": alert.version,
    }


def _reading_row(recorded: RecordedReading, outcome: Outcome) -> tuple[Any, ...]:
    """The `vitals` row of a reading, in the table's column order (`_insert_reading`)."""
    return (
        recorded.reading_id,
        recorded.patient_id,
        recorded.device_id,
        recorded.reading.ts,
        orjson.dumps(recorded.reading.measurements()).decode(),
        # the dataclass as orjson writes it is `Assessment.to_dict()`'s JSON (see _state_to_json)
        orjson.dumps(outcome.assessment).decode() if outcome.assessment else None,
        outcome.alert.id if outcome.alert else None,
        outcome.change.value if outcome.change else None,
        recorded.received_at,
    )


class _StoredBefore(Exception):
    """A reading of the batch, written as all new, was stored before: it is written again."""


class ConcurrentReadings(Exception):
    """Readings of this batch were stored by another writer while it was being decided."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} readings were stored concurrently; the batch is retried")


def _alert(row: Any) -> Alert:
    return Alert(
        id=row.id,
        patient_id=row.patient_id,
        ward=row.ward,
        severity=Severity(row.severity),
        status=AlertStatus(row.status),
        score=row.score,
        risk=Risk(row.risk),
        peak_score=row.peak_score,
        readings=row.readings,
        calm_readings=row.calm_readings,
        opened_at=row.opened_at,
        updated_at=row.updated_at,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
        resolved_at=row.resolved_at,
        version=row.version,
    )


def _stored(row: Any) -> StoredReading:
    return StoredReading(
        reading_id=row.id,
        device_id=row.device_id,
        patient_id=row.patient_id,
        ts=row.ts,
        values=orjson.loads(row.measurements),
        assessment=Assessment.from_dict(orjson.loads(row.assessment)) if row.assessment else None,
    )


class SqlVitalsStore:
    """VitalsStore over the analytics database."""

    def __init__(self, db: Database, *, remembered_states: int = 10_000) -> None:
        self._db = db
        # each patient's state as this store last wrote it, with the text written: a state read
        # back as that same text (by the worker, or a NEWS2 read) is not parsed again. The
        # table stays the truth (any other text, from another writer or a transaction that
        # rolled back, is parsed), so this holds in every topology; oldest written first out
        # past `remembered_states` patients
        self._written: dict[UUID, tuple[str, PatientVitals]] = {}
        self._remembered_states = remembered_states
        dialect_insert = _dialect_insert(db)
        # built once, bound per call: SQLAlchemy compiles each statement once, not per reading
        self._insert_reading = BulkInsert(vitals, skip_conflicts=True)
        self._state_if_missing = dialect_insert(patient_vitals).on_conflict_do_nothing()
        upsert = dialect_insert(patient_vitals)
        self._upsert_state = upsert.on_conflict_do_update(
            index_elements=["patient_id"],
            set_={"state": upsert.excluded.state, "ward": upsert.excluded.ward},
        )
        # the batch's reads too, with the lists bound per call: building `in_(...)` over a
        # batch's values cost a fifth of a small batch's CPU
        self._stored_between = select(vitals.c.device_id, vitals.c.ts).where(
            vitals.c.device_id.in_(bindparam("devices", expanding=True)),
            vitals.c.ts.between(bindparam("first"), bindparam("last")),
        )
        self._states_locked = (
            select(patient_vitals)
            .where(patient_vitals.c.patient_id.in_(bindparam("patients", expanding=True)))
            .order_by(patient_vitals.c.patient_id)
            .with_for_update()
        )
        self._open_alerts = (
            select(alerts)
            .where(
                alerts.c.patient_id.in_(bindparam("patients", expanding=True)),
                alerts.c.status != AlertStatus.RESOLVED,
            )
            .order_by(alerts.c.opened_at)
        )

    async def record_many(
        self, batch: Sequence[RecordedReading], decide: Decide, *, wards: Mapping[UUID, str]
    ) -> list[tuple[Outcome, bool]]:
        """Store readings in order with what `decide` makes of each, all in one transaction.

        A constant number of statements per batch, not per reading, and each reading written
        once: the patients' states and open alerts are read together, the readings decided in
        memory in order, and everything written back together.

        A reading stored before is a redelivery, which is rare: a batch is first written as if
        all of it were new, and the insert itself tells whether it was. Only then is the batch
        undone and written again, asking first which readings were stored. The common batch
        saves that query, and a round trip on PostgreSQL.
        """
        try:
            return await self._record(batch, decide, wards, look_up_repeats=False)
        except _StoredBefore:
            metrics.BATCHES_REWRITTEN.inc()
            return await self._record(batch, decide, wards, look_up_repeats=True)

    async def _record(
        self,
        batch: Sequence[RecordedReading],
        decide: Decide,
        wards: Mapping[UUID, str],
        *,
        look_up_repeats: bool,
    ) -> list[tuple[Outcome, bool]]:
        async with self._db.writer.begin() as conn:
            stored = await self._stored_instants(conn, batch) if look_up_repeats else set()
            fresh: list[RecordedReading] = []
            for r in batch:
                if (r.device_id, r.reading.ts) not in stored:
                    stored.add((r.device_id, r.reading.ts))
                    fresh.append(r)
            outcomes = await self._decide_all(conn, fresh, decide, wards)
            if fresh:
                inserted = await self._insert_reading.run(
                    conn, [_reading_row(r, outcomes[r.reading_id]) for r in fresh]
                )
                if inserted != len(fresh):
                    # undo all: stored before (look them up), or by another writer meanwhile
                    # (the worker's retry sees them)
                    if look_up_repeats:
                        raise ConcurrentReadings(len(fresh))
                    raise _StoredBefore
            return [
                (outcomes[r.reading_id], True)
                if r.reading_id in outcomes
                else (await self._earlier_outcome(conn, r), False)
                for r in batch
            ]

    async def _stored_instants(
        self, conn: AsyncConnection, batch: Sequence[RecordedReading]
    ) -> set[tuple[str, datetime]]:
        """Which (device, instant) pairs of the batch are stored already: one index range scan."""
        if not batch:
            return set()
        instants = [r.reading.ts for r in batch]
        rows = await conn.execute(
            self._stored_between,
            {
                "devices": list({r.device_id for r in batch}),
                "first": min(instants),
                "last": max(instants),
            },
        )
        return {(row.device_id, row.ts) for row in rows}

    async def _decide_all(
        self,
        conn: AsyncConnection,
        fresh: Sequence[RecordedReading],
        decide: Decide,
        wards: Mapping[UUID, str],
    ) -> dict[str, Outcome]:
        patient_ids = {r.patient_id for r in fresh}
        if not patient_ids:
            return {}
        # one patient's readings commit one after another even when several worker processes
        # hand them in at once: the state rows are made if missing, then locked before they are
        # read (in patient order, so two batches never wait on each other crosswise); no two
        # transactions see "no open alert" for one patient or overwrite each other's state
        ordered = sorted(patient_ids)
        if self._db.backend != "sqlite":
            # SQLite has one writer connection, which serialises these transactions whole: there
            # is nothing to lock, and the insert would be one statement of seven for nothing
            await conn.execute(
                self._state_if_missing,
                [{"patient_id": p, "state": "", "ward": wards[p]} for p in ordered],
            )
        states = {
            row.patient_id: self._state(row.patient_id, row.state)
            for row in await conn.execute(self._states_locked, {"patients": ordered})
            if row.state  # "" marks a row made just now to be locked: no state yet
        }
        loaded = await self._active_alerts(conn, patient_ids)
        loaded_versions = {a.id: a.version for a in loaded.values()}
        active: dict[UUID, Alert | None] = dict(loaded)
        outcomes: dict[str, Outcome] = {}
        touched: dict[UUID, Alert] = {}
        for r in fresh:  # in order: each reading sees the state the one before left
            new_state, outcome = decide(r, states.get(r.patient_id), active.get(r.patient_id))
            states[r.patient_id] = new_state
            outcomes[r.reading_id] = outcome
            if outcome.alert is not None and outcome.change is not None:
                touched[outcome.alert.id] = outcome.alert
                is_open = outcome.alert.status is not AlertStatus.RESOLVED
                active[r.patient_id] = outcome.alert if is_open else None
        await conn.execute(
            self._upsert_state,
            [
                {"patient_id": p, "state": self._written_state(p, states[p]), "ward": wards[p]}
                for p in patient_ids
            ],
        )
        raised = [a for a in touched.values() if a.id not in loaded_versions]
        if raised:
            await conn.execute(insert(alerts), [_alert_row(a) for a in raised])
        for alert in touched.values():
            if alert.id in loaded_versions:
                await self._update_alert(conn, alert, loaded_versions[alert.id])
        return outcomes

    def _state(self, patient_id: UUID, text: str) -> PatientVitals:
        written = self._written.get(patient_id)
        if written is not None and written[0] == text:
            return written[1]  # what parsing `text` gives: `assess` never changes a state
        return _state_from_json(text)

    def _written_state(self, patient_id: UUID, state: PatientVitals) -> str:
        """`state` as text, remembered as what this store last wrote for the patient."""
        text = _state_to_json(state)
        written = self._written
        written.pop(patient_id, None)
        written[patient_id] = (text, state)
        if len(written) > self._remembered_states:
            del written[next(iter(written))]
        return text

    async def _earlier_outcome(self, conn: AsyncConnection, recorded: RecordedReading) -> Outcome:
        row = (
            await conn.execute(
                select(vitals).where(
                    vitals.c.device_id == recorded.device_id, vitals.c.ts == recorded.reading.ts
                )
            )
        ).first()
        if row is None:  # same id, other device/ts: cannot happen with ids we mint; be safe
            return Outcome(None, None, None)
        alert = None
        if row.alert_id is not None:
            alert_row = (
                await conn.execute(select(alerts).where(alerts.c.id == row.alert_id))
            ).first()
            alert = _alert(alert_row) if alert_row else None
        return Outcome(
            _stored(row).assessment,
            alert,
            AlertChange(row.alert_change) if row.alert_change else None,
        )

    async def _active_alerts(
        self, conn: AsyncConnection, patient_ids: set[UUID]
    ) -> dict[UUID, Alert]:
        """Each patient's open (not resolved) alert; the newest if, unexpectedly, several."""
        rows = await conn.execute(self._open_alerts, {"patients": list(patient_ids)})
        return {row.patient_id: _alert(row) for row in rows}

    async def _update_alert(self, conn: AsyncConnection, alert: Alert, expected: int) -> None:
        result = await conn.execute(
            update(alerts)
            .where(alerts.c.id == alert.id, alerts.c.version == expected)
            .values(_alert_row(alert))
        )
        if result.rowcount != 1:
            raise AlertChanged(alert.id)

    async def save_alert(self, alert: Alert, *, expected_version: int) -> None:
        async with self._db.writer.begin() as conn:
            await self._update_alert(conn, alert, expected_version)

    async def series(
        self, patient_id: UUID, *, since: datetime | None, limit: int, every_s: int | None = None
    ) -> list[StoredReading]:
        chosen = vitals.c.patient_id == patient_id
        if since is not None:
            chosen = and_(chosen, vitals.c.ts >= since)
        source: Any = vitals
        if every_s is not None:
            # newest reading per slice: numbered within its slice, newest first, keep number 1
            newest_first = func.row_number().over(
                partition_by=self._slice(every_s),
                order_by=(vitals.c.ts.desc(), vitals.c.id.desc()),
            )
            numbered = select(vitals, newest_first.label("newest")).where(chosen).subquery()
            source, chosen = numbered, numbered.c.newest == 1
        query = select(*(source.c[c.name] for c in vitals.columns)).where(chosen)
        if since is not None:
            query = query.order_by(source.c.ts, source.c.id)
        else:
            query = query.order_by(source.c.ts.desc(), source.c.id.desc())
        async with self._db.reader.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        readings = [_stored(r) for r in rows]
        return readings if since is not None else readings[::-1]

    def _slice(self, every_s: int) -> Any:
        """The number of the `every_s`-second slice of time a reading's ts falls in."""
        if self._db.backend == "postgresql":
            return func.floor(func.extract("epoch", vitals.c.ts) / every_s)
        # SQLite keeps the UTC time as text; %s reads it as Unix seconds
        return cast(func.strftime("%s", vitals.c.ts), Integer) // every_s

    async def latest(
        self, *, ward: str | None, after: UUID | None, limit: int
    ) -> list[LatestNews2]:
        query = select(patient_vitals).order_by(patient_vitals.c.patient_id).limit(limit)
        if ward is not None:
            query = query.where(patient_vitals.c.ward == ward)
        if after is not None:
            query = query.where(patient_vitals.c.patient_id > after)
        async with self._db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        found = []
        for row in rows:
            if not row.state:  # never committed empty (see _decide_all); be safe
                continue
            state = self._state(row.patient_id, row.state)
            # a state is only stored with the assessment of its first reading, never without
            if state.assessment is not None:
                found.append(LatestNews2(row.patient_id, row.ward, state.assessment))
        return found

    async def open_alerts_by_severity(self) -> dict[str, int]:
        query = (
            select(alerts.c.severity, func.count().label("n"))
            .where(alerts.c.status == AlertStatus.OPEN.value)
            .group_by(alerts.c.severity)
        )
        async with self._db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {severity.value: 0 for severity in Severity} | {r.severity: r.n for r in rows}

    async def raised_by_day(self, *, first_day: date, last_day: date) -> dict[date, dict[str, int]]:
        """Alerts opened on each UTC day from `first_day` to `last_day`, by severity now (an
        urgent alert that escalated counts as critical); days without any are left out."""
        query = self.raised_by_day_query(first_day=first_day, last_day=last_day)
        async with self._db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        found: dict[date, dict[str, int]] = {}
        for raw_day, severity, count in rows:
            on = raw_day if isinstance(raw_day, date) else date.fromisoformat(str(raw_day))
            found.setdefault(on, {})[str(severity)] = int(count)
        return found

    def raised_by_day_query(self, *, first_day: date, last_day: date) -> Select[Any]:
        """The statement behind `raised_by_day` (public so a test can read its query plan)."""
        start = datetime.combine(first_day, time.min, UTC)
        end = datetime.combine(last_day + timedelta(days=1), time.min, UTC)
        day = self._utc_day(alerts.c.opened_at)
        # a range on the (opened_at, severity) index: only the window's rows are read
        return (
            select(day, alerts.c.severity, func.count())
            .where(alerts.c.opened_at >= start, alerts.c.opened_at < end)
            .group_by(day, alerts.c.severity)
        )

    def _utc_day(self, column: Any) -> Any:
        """The UTC calendar day of a timestamp column."""
        if self._db.backend == "postgresql":
            return func.date(func.timezone("UTC", column))
        # SQLite keeps the UTC time as text, "YYYY-MM-DD HH:MM:SS.ffffff"
        return func.substr(column, 1, 10)

    async def state(self, patient_id: UUID) -> PatientVitals | None:
        async with self._db.reader.connect() as conn:
            text = await conn.scalar(
                select(patient_vitals.c.state).where(patient_vitals.c.patient_id == patient_id)
            )
        return self._state(patient_id, text) if text else None

    async def alert(self, alert_id: UUID) -> Alert | None:
        async with self._db.reader.connect() as conn:
            row = (await conn.execute(select(alerts).where(alerts.c.id == alert_id))).first()
        return _alert(row) if row else None

    async def alerts(
        self,
        *,
        status: AlertStatus | None,
        severity: Severity | None,
        ward: str | None,
        patient_id: UUID | None,
        limit: int,
    ) -> list[Alert]:
        query = select(alerts).order_by(alerts.c.opened_at.desc(), alerts.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(alerts.c.status == status.value)
        if severity is not None:
            query = query.where(alerts.c.severity == severity.value)
        if ward is not None:
            query = query.where(alerts.c.ward == ward)
        if patient_id is not None:
            query = query.where(alerts.c.patient_id == patient_id)
        async with self._db.reader.connect() as conn:
            return [_alert(r) for r in (await conn.execute(query)).all()]

    async def check(self) -> Check:
        return await self._db.check()
