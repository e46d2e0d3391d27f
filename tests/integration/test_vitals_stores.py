"""Contract tests of the telemetry stores, run over every database adapter: SQLite always,
PostgreSQL when its server and driver are here (a fresh database per test, dropped after)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from healthflow.patients.domain import PatientNotFound
from healthflow.storage.engine import Database, open_database
from healthflow.vitals import intake_store
from healthflow.vitals import store as schema
from healthflow.vitals.alerts import AlertChanged, AlertStatus
from healthflow.vitals.domain import Consciousness, QuarantinedReading, Reading
from healthflow.vitals.events import RecordedReading
from healthflow.vitals.monitor import VitalsMonitor
from tests.conftest import SteppingClock

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
CRITICAL = {
    "heart_rate": 140.0,
    "resp_rate": 28.0,
    "spo2": 88.0,
    "systolic_bp": 85.0,
    "temperature": 39.5,
    "consciousness": Consciousness.VOICE,
    "on_oxygen": True,
}


def _postgres_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = open_database(f"sqlite+aiosqlite:///{tmp_path / 'vitals.db'}")
        await database.create_schema(intake_store.intake_metadata)
        await database.create_schema(schema.series_metadata)
        yield database
        await database.dispose()
        return
    pytest.importorskip("asyncpg", reason="PostgreSQL adapter tests need the asyncpg driver")
    if not _postgres_up():
        pytest.skip("PostgreSQL is not answering on 127.0.0.1:5432")
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"hf_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    database = open_database(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}")
    try:
        await database.create_schema(intake_store.intake_metadata)
        await database.create_schema(schema.series_metadata)
        yield database
    finally:
        await database.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


class FakeWards:
    """The PatientDirectory port in memory: one patient, in ward ICU."""

    def __init__(self, patient_id: UUID) -> None:
        self.patient_id = patient_id

    async def ward(self, patient_id: UUID) -> str:
        if patient_id != self.patient_id:
            raise PatientNotFound(patient_id)
        return "ICU"


class FakeHub:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    async def broadcast(self, type: str, data: dict[str, Any], time: datetime) -> None:
        self.messages.append((type, data))

    def stats(self) -> dict[str, int]:
        return {"clients": 0, "seq": len(self.messages)}


def recorded(patient_id: UUID, second: int, **values: Any) -> RecordedReading:
    ts = T0 + timedelta(seconds=second)
    return RecordedReading(str(uuid4()), "mon-1", patient_id, Reading(ts=ts, **values), ts)


@pytest.fixture
def patient_id() -> UUID:
    return uuid4()


@pytest.fixture
def parts(db: Database, patient_id: UUID) -> tuple[VitalsMonitor, FakeWards, FakeHub]:
    patients, hub = FakeWards(patient_id), FakeHub()
    monitor = VitalsMonitor(schema.SqlVitalsStore(db), patients, hub, SteppingClock(T0))
    return monitor, patients, hub


async def test_a_redelivered_reading_has_its_effect_once(
    parts: tuple[VitalsMonitor, FakeWards, FakeHub], patient_id: UUID, db: Database
) -> None:
    monitor, _, hub = parts
    reading = recorded(patient_id, 0, **CRITICAL)
    first = await monitor.assess(reading)
    pushed = len(hub.messages)
    again = await monitor.assess(reading)
    assert (first.first, again.first) == (True, False)
    [alert] = await monitor.alerts(
        status=None, severity=None, ward=None, patient_id=patient_id, limit=10
    )
    assert alert.readings == 1
    assert len(await schema.SqlVitalsStore(db).series(patient_id, since=None, limit=10)) == 1
    # the move to critical is asked for again (the first run may have died before it), keyed
    # by the same alert so it happens once; nothing is pushed twice
    assert first.critical is not None
    assert again.critical == first.critical
    assert first.critical.alert_id == alert.id
    assert len(hub.messages) == pushed


async def test_the_same_device_and_instant_under_a_new_id_is_a_duplicate(
    parts: tuple[VitalsMonitor, FakeWards, FakeHub], patient_id: UUID, db: Database
) -> None:
    monitor, _, _ = parts
    await monitor.record(recorded(patient_id, 0, heart_rate=70.0))
    await monitor.record(recorded(patient_id, 0, heart_rate=150.0))
    [stored] = await schema.SqlVitalsStore(db).series(patient_id, since=None, limit=10)
    assert stored.values == {"heart_rate": 70.0}


async def test_a_late_reading_is_stored_but_not_scored(
    parts: tuple[VitalsMonitor, FakeWards, FakeHub], patient_id: UUID, db: Database
) -> None:
    monitor, _, _ = parts
    await monitor.record(recorded(patient_id, 10, heart_rate=70.0))
    late, _ = await monitor.record(recorded(patient_id, 5, **CRITICAL))
    assert (late.assessment, late.alert) == (None, None)
    series = await schema.SqlVitalsStore(db).series(patient_id, since=None, limit=10)
    assert [s.assessment is None for s in series] == [True, False]
    assert (await monitor.news2(patient_id)).total == 0


async def test_saving_a_stale_alert_is_refused(
    parts: tuple[VitalsMonitor, FakeWards, FakeHub], patient_id: UUID, db: Database
) -> None:
    monitor, _, _ = parts
    outcome, _ = await monitor.record(recorded(patient_id, 0, **CRITICAL))
    assert outcome.alert is not None
    store = schema.SqlVitalsStore(db)
    acked, _ = outcome.alert.acknowledge(by="a", at=T0)
    await store.save_alert(acked, expected_version=outcome.alert.version)
    with pytest.raises(AlertChanged):
        await store.save_alert(acked, expected_version=outcome.alert.version)
    stored = await store.alert(outcome.alert.id)
    assert stored is not None
    assert stored.status is AlertStatus.ACKNOWLEDGED


async def test_intake_counts_duplicates_and_pages_the_quarantine(db: Database) -> None:
    intake = intake_store.SqlTelemetryIntake(db)
    patient = uuid4()
    batch = [recorded(patient, i, heart_rate=70.0) for i in range(3)]
    assert await intake.accept(batch, []) == 0
    again = [recorded(patient, i, heart_rate=70.0) for i in range(2, 5)]
    assert await intake.accept(again, []) == 1
    assert await intake.backlog() == 5
    held = [
        QuarantinedReading(_uuid7(i), "mon-1", None, "out_of_range", "spo2", "x", {}, T0)
        for i in range(5)
    ]
    await intake.accept([], held)
    first = await intake.quarantined(device_id="mon-1", reason=None, before=None, limit=3)
    rest = await intake.quarantined(device_id="mon-1", reason=None, before=first[-1].id, limit=3)
    assert [q.id for q in first + rest] == [q.id for q in reversed(held)]
    assert await intake.quarantined(device_id="other", reason=None, before=None, limit=3) == []
    assert await intake.quarantined(device_id=None, reason="in_future", before=None, limit=3) == []


def _uuid7(i: int) -> UUID:
    from healthflow.ids import uuid7

    return uuid7(T0 + timedelta(seconds=i))


async def test_readings_of_one_patient_handled_at_once_raise_one_alert(
    parts: tuple[VitalsMonitor, FakeWards, FakeHub], patient_id: UUID, db: Database
) -> None:
    # several worker processes can hand in one patient's readings at the same moment
    monitor, _, _ = parts
    readings = [
        RecordedReading(
            str(uuid4()),
            f"mon-{n}",
            patient_id,
            Reading(ts=T0 + timedelta(seconds=n), **CRITICAL),
            T0 + timedelta(seconds=n),
            "ICU",
        )
        for n in range(8)
    ]

    await asyncio.gather(*(monitor.record(r) for r in readings))

    [alert] = await monitor.alerts(
        status=None, severity=None, ward=None, patient_id=patient_id, limit=10
    )
    series = await schema.SqlVitalsStore(db).series(patient_id, since=None, limit=10)
    assert len(series) == 8
    # every reading that was scored counted on the one alert: no update was lost
    assert alert.readings == sum(1 for s in series if s.assessment is not None)
