"""SQLAlchemy adapter of the vitals series (analytics database): the readings, each patient's
NEWS2 state and the alerts, written together per reading so its effect is stored exactly once.
"""

from __future__ import annotations

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
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from healthflow.ports import Check
from healthflow.storage.engine import Database, UtcDateTime
from healthflow.vitals.alerts import Alert, AlertChange, AlertChanged, AlertStatus, Severity
from healthflow.vitals.assessment import Assessment, PatientVitals
from healthflow.vitals.events import RecordedReading
from healthflow.vitals.news2 import Risk
from healthflow.vitals.ports import Decide, Outcome, StoredReading

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
)


def _dialect_insert(db: Database) -> Any:
    return postgresql.insert if db.backend == "postgresql" else sqlite.insert


def _state_to_json(state: PatientVitals) -> str:
    return orjson.dumps(
        {
            "latest": {k: [v, at.isoformat()] for k, (v, at) in state.latest.items()},
            "spo2_scale": state.spo2_scale,
            "assessment": state.assessment.to_dict() if state.assessment else None,
        }
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

    def __init__(self, db: Database) -> None:
        self._db = db
        self._insert = _dialect_insert(db)

    async def record(self, recorded: RecordedReading, decide: Decide) -> tuple[Outcome, bool]:
        async with self._db.writer.begin() as conn:
            inserted = await conn.execute(
                self._insert(vitals)
                .values(
                    id=recorded.reading_id,
                    patient_id=recorded.patient_id,
                    device_id=recorded.device_id,
                    ts=recorded.reading.ts,
                    measurements=orjson.dumps(recorded.reading.measurements()).decode(),
                    received_at=recorded.received_at,
                )
                .on_conflict_do_nothing()
            )
            if inserted.rowcount == 0:
                return await self._earlier_outcome(conn, recorded), False
            # one patient's readings commit one after another even when several worker processes
            # hand them in at once: the state row is made if missing, then locked before it is
            # read, so no two see "no active alert" or overwrite each other's state
            await conn.execute(
                self._insert(patient_vitals)
                .values(patient_id=recorded.patient_id, state="")
                .on_conflict_do_nothing()
            )
            state_row = await conn.scalar(
                select(patient_vitals.c.state)
                .where(patient_vitals.c.patient_id == recorded.patient_id)
                .with_for_update()
            )
            state = _state_from_json(state_row) if state_row else None
            active = await self._active_alert(conn, recorded.patient_id)
            new_state, outcome = decide(state, active)
            values = {"patient_id": recorded.patient_id, "state": _state_to_json(new_state)}
            stmt = self._insert(patient_vitals).values(values)
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["patient_id"], set_=values)
            )
            if outcome.alert is not None and outcome.change is AlertChange.RAISED:
                await conn.execute(insert(alerts).values(_alert_row(outcome.alert)))
            elif outcome.alert is not None and outcome.change is not None:
                await self._update_alert(conn, outcome.alert, outcome.alert.version - 1)
            await conn.execute(
                update(vitals)
                .where(vitals.c.id == recorded.reading_id)
                .values(
                    assessment=(
                        orjson.dumps(outcome.assessment.to_dict()).decode()
                        if outcome.assessment
                        else None
                    ),
                    alert_id=outcome.alert.id if outcome.alert else None,
                    alert_change=outcome.change.value if outcome.change else None,
                )
            )
        return outcome, True

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

    async def _active_alert(self, conn: AsyncConnection, patient_id: UUID) -> Alert | None:
        row = (
            await conn.execute(
                select(alerts)
                .where(alerts.c.patient_id == patient_id, alerts.c.status != AlertStatus.RESOLVED)
                .order_by(alerts.c.opened_at.desc())
                .limit(1)
            )
        ).first()
        return _alert(row) if row else None

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
        self, patient_id: UUID, *, since: datetime | None, limit: int
    ) -> list[StoredReading]:
        query = select(vitals).where(vitals.c.patient_id == patient_id)
        if since is not None:
            query = query.where(vitals.c.ts >= since).order_by(vitals.c.ts, vitals.c.id)
        else:
            query = query.order_by(vitals.c.ts.desc(), vitals.c.id.desc())
        async with self._db.reader.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        readings = [_stored(r) for r in rows]
        return readings if since is not None else readings[::-1]

    async def state(self, patient_id: UUID) -> PatientVitals | None:
        async with self._db.reader.connect() as conn:
            text = await conn.scalar(
                select(patient_vitals.c.state).where(patient_vitals.c.patient_id == patient_id)
            )
        return _state_from_json(text) if text else None

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
