"""Contract tests of the telemetry stores, run over every database adapter: SQLite always,
PostgreSQL when its server and driver are here (a fresh database per test, dropped after)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event

from healthflow.patients.domain import PatientNotFound
from healthflow.storage.engine import Database, open_database
from healthflow.vitals import intake_store
from healthflow.vitals import store as schema
from healthflow.vitals.alerts import Alert, AlertChanged, AlertStatus, Severity
from healthflow.vitals.assessment import PatientVitals, assess
from healthflow.vitals.domain import (
    Consciousness,
    Device,
    QuarantinedReading,
    Reading,
    ReadingsRefused,
)
from healthflow.vitals.events import RecordedReading
from healthflow.vitals.monitor import VitalsMonitor, critical_call
from healthflow.vitals.ports import Outcome, StoredReading
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


def recorded(
    patient_id: UUID, second: int, device: str = "mon-1", **values: Any
) -> RecordedReading:
    ts = T0 + timedelta(seconds=second)
    return RecordedReading(str(uuid4()), device, patient_id, Reading(ts=ts, **values), ts)


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
    [first] = await monitor.assess_many([reading])
    pushed = len(hub.messages)
    [again] = await monitor.assess_many([reading])
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


async def test_a_reading_the_intake_did_not_check_is_checked_before_anything_is_stored(
    parts: tuple[VitalsMonitor, FakeWards, FakeHub], patient_id: UUID, db: Database
) -> None:
    monitor, _, hub = parts
    good, bad = recorded(patient_id, 0, heart_rate=70.0), recorded(patient_id, 2, heart_rate=900.0)
    with pytest.raises(ReadingsRefused):  # decoded from an event, or handed in over HTTP
        await monitor.record_many([good, bad])
    assert await schema.SqlVitalsStore(db).series(patient_id, since=None, limit=10) == []
    assert hub.messages == []
    # the intake's own readings (marked as checked as they arrived) are not checked again
    checked = dataclasses.replace(good, checked=True)
    assert checked == good  # the mark is no part of the reading's identity
    [(outcome, first)] = await monitor.record_many([checked])
    assert first and outcome.assessment is not None


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


CALM = {
    "heart_rate": 72.0,
    "resp_rate": 16.0,
    "spo2": 97.0,
    "systolic_bp": 120.0,
    "temperature": 37.0,
    "consciousness": Consciousness.ALERT,
    "on_oxygen": False,
}
# calm, deteriorating to critical, then calm for long enough that the alert resolves
STAY = [CALM, CALM, {**CALM, "resp_rate": 22.0, "heart_rate": 112.0}, CRITICAL, CRITICAL]
STAY += [CALM] * 4


def _summary(outcome: Any) -> tuple[Any, ...]:
    return (
        outcome.assessment.total if outcome.assessment else None,
        outcome.change.value if outcome.change else None,
        outcome.alert.severity.value if outcome.alert else None,
        outcome.alert.status.value if outcome.alert else None,
    )


async def test_a_batch_has_exactly_the_effect_of_its_readings_one_by_one(db: Database) -> None:
    # the worker hands the monitor whatever its queue holds: the outcome may not depend on that
    one_by_one, batched = FakeWards(uuid4()), FakeWards(uuid4())
    store = schema.SqlVitalsStore(db)
    single = VitalsMonitor(store, one_by_one, FakeHub(), SteppingClock(T0))
    batch_hub = FakeHub()
    together = VitalsMonitor(store, batched, batch_hub, SteppingClock(T0))
    singles = [
        (await single.record(recorded(one_by_one.patient_id, i, **v)))[0]
        for i, v in enumerate(STAY)
    ]
    results = await together.record_many(
        [recorded(batched.patient_id, i, "mon-2", **v) for i, v in enumerate(STAY)]
    )
    assert [_summary(o) for o in singles] == [_summary(o) for o, _ in results]
    assert all(first for _, first in results)
    # one move to critical asked for, by the reading that made the alert critical
    for outcomes in (singles, [o for o, _ in results]):
        assert len([c for c in map(critical_call, outcomes) if c is not None]) == 1
    for patients in (one_by_one, batched):
        [alert] = await store.alerts(
            status=None, severity=None, ward=None, patient_id=patients.patient_id, limit=10
        )
        assert (alert.severity.value, alert.status.value) == ("critical", "resolved")
        news2 = await store.state(patients.patient_id)
        assert news2 is not None and news2.assessment is not None
        assert news2.assessment.total == 0
    # every alert step is pushed; vitals once per patient per batch (the hub coalesces anyway)
    types = [t for t, _ in batch_hub.messages]
    assert types.count("AlertRaised") == 1
    assert types.count("VitalsUpdated") == 1
    assert batch_hub.messages[-1][1]["reading"]["heart_rate"] == 72.0


async def test_a_dashboard_receives_a_reading_and_its_news2_as_json_text(
    db: Database, patient_id: UUID
) -> None:
    # the push hands orjson the reading's instant and the Assessment as they are: what a
    # dashboard reads must be the reading's and the assessment's JSON dicts all the same
    from healthflow.realtime.fanout import Fanout
    from healthflow.realtime.hub import MemoryHub
    from healthflow.vitals.events import reading_to_dict

    hub = MemoryHub(
        Fanout(replay_size=10, send_queue_size=10, max_clients=1), vitals_min_interval_s=0
    )
    dashboard = hub.fanout.connect()
    assert dashboard is not None
    hub.fanout.subscribe(dashboard, [f"patient:{patient_id}"])
    monitor = VitalsMonitor(
        schema.SqlVitalsStore(db), FakeWards(patient_id), hub, SteppingClock(T0)
    )
    sent = dataclasses.replace(
        recorded(patient_id, 0, **CRITICAL),
        reading=Reading(ts=T0 + timedelta(microseconds=250), spo2_scale=2, **CRITICAL),
    )

    [(outcome, _)] = await monitor.record_many([sent])

    frames = [orjson.loads(frame) for _, frame in dashboard.take()]
    [pushed] = [f["data"] for f in frames if f["type"] == "VitalsUpdated"]
    assert outcome.assessment is not None
    assert pushed["reading"] == reading_to_dict(sent.reading)
    assert pushed["reading"]["ts"] == "2026-11-25T09:00:00.000250+00:00"
    assert pushed["news2"] == outcome.assessment.to_dict()
    assert pushed["patient_id"] == str(patient_id)


async def test_a_batch_with_repeats_applies_each_reading_once(
    parts: tuple[VitalsMonitor, FakeWards, FakeHub], patient_id: UUID, db: Database
) -> None:
    monitor, _, _ = parts
    first = recorded(patient_id, 0, **CRITICAL)
    await monitor.record(first)
    same_instant = recorded(patient_id, 1, heart_rate=70.0)
    redelivered_twice = dataclasses.replace(same_instant, reading_id=str(uuid4()))
    results = await monitor.record_many(
        [first, same_instant, redelivered_twice, recorded(patient_id, 2, **CRITICAL)]
    )
    assert [fresh for _, fresh in results] == [False, True, False, True]
    series = await schema.SqlVitalsStore(db).series(patient_id, since=None, limit=10)
    assert len(series) == 3
    [alert] = await schema.SqlVitalsStore(db).alerts(
        status=None, severity=None, ward=None, patient_id=patient_id, limit=10
    )
    assert alert.readings == 3
    # the repeat answers with the alert it touched the first time, as it stands now
    assert results[0][0].alert is not None and results[0][0].alert.id == alert.id


def _series_lookups(db: Database) -> tuple[list[str], Callable[[], None]]:
    """The writer's reads of the vitals series (the lookup of readings stored before)."""
    lookups: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if " ".join(statement.split()).startswith("SELECT vitals.device_id, vitals.ts FROM"):
            lookups.append(statement)

    event.listen(db.writer.sync_engine, "before_cursor_execute", seen)
    return lookups, lambda: event.remove(db.writer.sync_engine, "before_cursor_execute", seen)


def _rewritten() -> float:
    return REGISTRY.get_sample_value("healthflow_vitals_batches_rewritten_total") or 0.0


async def test_new_readings_are_written_without_asking_which_were_stored_before(
    parts: tuple[VitalsMonitor, FakeWards, FakeHub], patient_id: UUID, db: Database
) -> None:
    monitor, _, _ = parts
    first = recorded(patient_id, 0, **CRITICAL)
    lookups, stop = _series_lookups(db)
    rewritten = _rewritten()
    try:
        await monitor.record_many([first, recorded(patient_id, 1, heart_rate=70.0)])
        assert (lookups, _rewritten() - rewritten) == ([], 0)
        # a redelivery: the insert finds it, the batch is undone and written again, looking up
        results = await monitor.record_many([first, recorded(patient_id, 2, heart_rate=71.0)])
    finally:
        stop()
    assert (len(lookups), _rewritten() - rewritten) == (1, 1)
    assert [fresh for _, fresh in results] == [False, True]
    assert len(await schema.SqlVitalsStore(db).series(patient_id, since=None, limit=10)) == 3
    [alert] = await monitor.alerts(
        status=None, severity=None, ward=None, patient_id=patient_id, limit=10
    )
    assert alert.readings == 3  # the undone first try left nothing behind


async def test_a_state_another_writer_changed_is_read_from_the_table(db: Database) -> None:
    # two stores on one database, as two worker processes: each remembers what it wrote
    here, there = schema.SqlVitalsStore(db), schema.SqlVitalsStore(db)
    patient = uuid4()
    wards = {patient: "ICU"}
    await here.record_many([recorded(patient, 0, heart_rate=70.0)], scored, wards=wards)
    await there.record_many([recorded(patient, 1, resp_rate=30.0)], scored, wards=wards)
    [(outcome, _)] = await here.record_many([recorded(patient, 2, spo2=97.0)], scored, wards=wards)
    # the respiration rate `there` stored is carried forward: `here` did not use its own copy
    assert outcome.assessment is not None
    assert outcome.assessment.sub_scores["resp_rate"] == 3
    state = await here.state(patient)
    assert state is not None
    assert set(state.latest) == {"heart_rate", "resp_rate", "spo2"}


async def test_reads_of_states_use_the_copy_only_while_the_table_holds_it(db: Database) -> None:
    # NEWS2 reads (a ward's board, one patient) parse what the table holds, unless it is the
    # text this store last wrote: then its parsed copy is the answer
    here, there = schema.SqlVitalsStore(db), schema.SqlVitalsStore(db)
    patient = uuid4()
    wards = {patient: "ICU"}
    await here.record_many([recorded(patient, 0, heart_rate=70.0)], scored, wards=wards)
    assert await here.state(patient) is await here.state(patient)  # the copy, not parsed
    [(written, _)] = await there.record_many(
        [recorded(patient, 1, resp_rate=30.0)], scored, wards=wards
    )

    [latest] = await here.latest(ward="ICU", after=None, limit=10)
    state = await here.state(patient)
    assert latest.assessment == written.assessment  # the other writer's, from the table
    assert state is not None and set(state.latest) == {"heart_rate", "resp_rate"}


async def test_a_state_of_an_undone_batch_is_not_taken_for_the_stored_one(db: Database) -> None:
    store = schema.SqlVitalsStore(db)
    patient = uuid4()
    wards = {patient: "ICU"}
    first = recorded(patient, 0, heart_rate=70.0)
    await store.record_many([first], scored, wards=wards)
    # the batch with a repeat is first written as all new (and the state after it remembered),
    # then undone: the state read next is the table's, without the undone try's readings
    with_repeat = [first, recorded(patient, 1, resp_rate=30.0)]
    seen: set[str] = set()

    def refuse_the_new_one(
        reading: RecordedReading, state: PatientVitals | None, active: Alert | None
    ) -> tuple[PatientVitals, Outcome]:
        if reading.reading.resp_rate is not None and reading.reading_id in seen:
            raise RuntimeError("refused on the second try")
        seen.add(reading.reading_id)
        return scored(reading, state, active)

    with pytest.raises(RuntimeError):
        await store.record_many(with_repeat, refuse_the_new_one, wards=wards)
    [(outcome, _)] = await store.record_many([recorded(patient, 2, spo2=97.0)], scored, wards=wards)
    state = await store.state(patient)
    assert state is not None
    assert set(state.latest) == {"heart_rate", "spo2"}
    assert outcome.assessment is not None and "resp_rate" not in outcome.assessment.carried_forward


def scored(
    reading: RecordedReading, state: PatientVitals | None, _: Alert | None
) -> tuple[PatientVitals, Outcome]:
    """A `decide` that scores the reading and leaves alerts alone."""
    new_state, assessment = assess(state, reading.reading)
    return new_state, Outcome(assessment, None, None)


async def test_a_thinned_series_keeps_the_newest_reading_of_each_slice(db: Database) -> None:
    store = schema.SqlVitalsStore(db)
    patient = uuid4()
    seconds = [0, 1, 4, 4.5, 5, 9, 12]
    for second in seconds:
        reading = recorded(patient, 0, heart_rate=70.0 + second)
        ts = T0 + timedelta(seconds=second)
        reading = dataclasses.replace(reading, reading=Reading(ts=ts, heart_rate=70.0 + second))
        await store.record_many([reading], scored, wards={patient: "ICU"})

    def offsets(series: list[StoredReading]) -> list[float]:
        return [(r.ts - T0).total_seconds() for r in series]

    # slices of 5 s from T0 (on a whole minute): [0, 5), [5, 10), [10, 15)
    assert offsets(await store.series(patient, since=T0, limit=10, every_s=5)) == [4.5, 9, 12]
    assert offsets(await store.series(patient, since=None, limit=10, every_s=5)) == [4.5, 9, 12]
    assert offsets(await store.series(patient, since=None, limit=2, every_s=5)) == [9, 12]
    assert offsets(await store.series(patient, since=T0, limit=1, every_s=5)) == [4.5]
    since = T0 + timedelta(seconds=4)
    assert offsets(await store.series(patient, since=since, limit=10, every_s=60)) == [12]
    assert offsets(await store.series(patient, since=since, limit=10)) == [4, 4.5, 5, 9, 12]


async def test_latest_pages_every_patients_current_news2_by_ward(db: Database) -> None:
    store = schema.SqlVitalsStore(db)
    wards = {uuid4(): "ICU", uuid4(): "ICU", uuid4(): "A&E"}
    for second, (patient, ward) in enumerate(wards.items()):
        for n in range(2):  # the latest is the second reading
            reading = recorded(patient, second * 10 + n, heart_rate=60.0 + 50 * n)
            await store.record_many([reading], scored, wards={patient: ward})

    everyone = await store.latest(ward=None, after=None, limit=10)
    assert [x.patient_id for x in everyone] == sorted(wards)
    assert {x.patient_id: x.ward for x in everyone} == wards
    assert all(x.assessment.sub_scores["heart_rate"] == 1 for x in everyone)  # 110/min
    icu = sorted(p for p, w in wards.items() if w == "ICU")
    first = await store.latest(ward="ICU", after=None, limit=1)
    rest = await store.latest(ward="ICU", after=first[-1].patient_id, limit=1)
    assert [x.patient_id for x in first + rest] == icu
    assert await store.latest(ward="ICU", after=icu[-1], limit=1) == []
    assert await store.latest(ward="Maternity", after=None, limit=10) == []


async def test_open_alerts_are_counted_by_severity(
    parts: tuple[VitalsMonitor, FakeWards, FakeHub], patient_id: UUID, db: Database
) -> None:
    monitor, _, _ = parts
    assert await monitor.open_alerts_by_severity() == {"urgent": 0, "critical": 0}
    outcome, _ = await monitor.record(recorded(patient_id, 0, **CRITICAL))
    assert await monitor.open_alerts_by_severity() == {"urgent": 0, "critical": 1}
    assert outcome.alert is not None
    await monitor.acknowledge(outcome.alert.id, by="dr.osei")
    assert await monitor.open_alerts_by_severity() == {"urgent": 0, "critical": 0}


class RacingStore(schema.SqlVitalsStore):
    """Runs `before_save` once, just before the first alert save: a reading landing between an
    acknowledgement's read and its write."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.before_save: Callable[[], Awaitable[object]] | None = None

    async def save_alert(self, alert: Alert, *, expected_version: int) -> None:
        hook, self.before_save = self.before_save, None
        if hook is not None:
            await hook()
        await super().save_alert(alert, expected_version=expected_version)


async def test_an_acknowledgement_racing_a_reading_acknowledges_the_updated_alert(
    db: Database, patient_id: UUID
) -> None:
    store, hub = RacingStore(db), FakeHub()
    monitor = VitalsMonitor(store, FakeWards(patient_id), hub, SteppingClock(T0))
    outcome, _ = await monitor.record(recorded(patient_id, 0, **CRITICAL))
    assert outcome.alert is not None
    store.before_save = lambda: monitor.record(recorded(patient_id, 1, **CRITICAL))

    acked = await monitor.acknowledge(outcome.alert.id, by="dr.osei")

    assert (acked.status, acked.acknowledged_by, acked.readings) == (
        AlertStatus.ACKNOWLEDGED,
        "dr.osei",
        2,
    )
    stored = await store.alert(outcome.alert.id)
    assert stored == acked
    assert hub.messages[-1][0] == "AlertUpdated"
    assert hub.messages[-1][1]["change"] == "acknowledged"
    assert hub.messages[-1][1]["version"] == acked.version == outcome.alert.version + 2
    vitals = [data for kind, data in hub.messages if kind == "VitalsUpdated"]
    assert [v["ward"] for v in vitals] == ["ICU", "ICU"]  # on the ward's topic too


async def test_an_acknowledgement_racing_an_escalation_is_refused(
    db: Database, patient_id: UUID
) -> None:
    store = RacingStore(db)
    monitor = VitalsMonitor(store, FakeWards(patient_id), FakeHub(), SteppingClock(T0))
    # NEWS2 5 (medium): an urgent alert
    worrying = {"resp_rate": 22.0, "spo2": 95.0, "heart_rate": 100.0, "temperature": 38.5}
    outcome, _ = await monitor.record(recorded(patient_id, 0, **worrying))
    assert outcome.alert is not None
    assert outcome.alert.severity is Severity.URGENT
    store.before_save = lambda: monitor.record(recorded(patient_id, 1, **CRITICAL))

    with pytest.raises(AlertChanged):
        await monitor.acknowledge(outcome.alert.id, by="dr.osei")

    stored = await store.alert(outcome.alert.id)
    assert stored is not None
    assert (stored.severity, stored.status, stored.acknowledged_by) == (
        Severity.CRITICAL,
        AlertStatus.OPEN,
        None,
    )


async def test_intake_backlog_counts_accepted_readings_until_they_are_published(
    db: Database,
) -> None:
    intake = intake_store.SqlTelemetryIntake(db, recount_after_s=3600)
    outbox = intake_store.SqlTelemetryOutbox(db)
    patient = uuid4()
    await intake.accept([recorded(patient, i, heart_rate=70.0) for i in range(3)], [])
    assert await intake.backlog() == 3
    # between two counts, what this process accepts is added to the last count
    await intake.accept([recorded(patient, i, heart_rate=70.0) for i in range(3, 5)], [])
    assert await intake.backlog() == 5
    pending = await outbox.pending(after_seq=0, limit=10)
    await outbox.mark_published([e.seq for e in pending], T0)
    recounting = intake_store.SqlTelemetryIntake(db, recount_after_s=0)
    assert await recounting.backlog() == 0


async def test_a_burst_finding_the_backlog_stale_waits_for_one_count(db: Database) -> None:
    intake = intake_store.SqlTelemetryIntake(db, recount_after_s=0)
    await intake.accept([recorded(uuid4(), i, heart_rate=70.0) for i in range(3)], [])
    counts: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "telemetry_outbox" in statement and "count" in statement.lower():
            counts.append(statement)

    event.listen(db.reader.sync_engine, "before_cursor_execute", seen)
    try:
        # 50 MQTT messages arriving together each ask before they are admitted
        assert await asyncio.gather(*(intake.backlog() for _ in range(50))) == [3] * 50
    finally:
        event.remove(db.reader.sync_engine, "before_cursor_execute", seen)
    assert len(counts) == 1


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


async def test_devices_looked_up_together_each_get_their_own_row_and_see_a_rebinding(
    db: Database,
) -> None:
    registry = intake_store.SqlDeviceRegistry(db)
    first, second = uuid4(), uuid4()
    for n, patient in enumerate([first, second, None]):
        await registry.add(Device(f"mon-{n}", "monitor", patient, T0), f"hash-{n}")

    # the lookups of a burst of MQTT messages arrive together and are read in one query
    found = await asyncio.gather(*(registry.get(d) for d in ["mon-0", "mon-1", "ghost", "mon-2"]))

    assert [(f[0].patient_id, f[1]) if f else None for f in found] == [
        (first, "hash-0"),
        (second, "hash-1"),
        None,
        (None, "hash-2"),
    ]
    await registry.bind("mon-0", second)
    bound = await registry.get("mon-0")
    assert bound is not None and bound[0].patient_id == second


def _outbox_reads(db: Database) -> tuple[list[str], Callable[[], None]]:
    reads: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "telemetry_outbox" in statement:
            reads.append(statement)

    event.listen(db.reader.sync_engine, "before_cursor_execute", seen)
    return reads, lambda: event.remove(db.reader.sync_engine, "before_cursor_execute", seen)


def _same(entries: list[Any]) -> list[tuple[int, Any, datetime]]:
    return [(e.seq, e.event, e.created_at) for e in entries]


async def test_the_outbox_hands_the_relay_what_the_intake_committed_as_the_table_holds_it(
    db: Database,
) -> None:
    outbox = intake_store.SqlTelemetryOutbox(db)
    intake = intake_store.SqlTelemetryIntake(db, on_commit=outbox.remember)
    patient = uuid4()
    reads, stop = _outbox_reads(db)
    try:
        await intake.accept([recorded(patient, i, heart_rate=70.0) for i in range(3)], [])
        first = await outbox.pending(after_seq=0, limit=100)
        assert (len(first), reads) == (3, [])  # the intake's copy: nothing read back
        # a repeat (skipped by the insert) and new readings; on PostgreSQL the repeat takes a
        # sequence number, so the copy no longer continues the cursor there and the table is read
        await intake.accept([recorded(patient, i, heart_rate=71.0) for i in range(2, 6)], [])
        handed, cursor = list(first), first[-1].seq
        while batch := await outbox.pending(after_seq=cursor, limit=2):
            handed.extend(batch)
            cursor = batch[-1].seq
        read_back = len(reads)
        table = await intake_store.SqlTelemetryOutbox(db).pending(after_seq=0, limit=100)
        assert _same(handed) == _same(table)
        assert len(table) == 6
        # only the last call, which found nothing, read the table on SQLite: an empty copy
        # cannot tell "nothing new" from "committed by someone else"
        assert (read_back == 1) if db.backend == "sqlite" else (read_back >= 1)
        # a rewind (the bus refused a batch) goes back before the copy: the table is read
        reads.clear()
        again = await outbox.pending(after_seq=0, limit=100)
        assert _same(again) == _same(table)
        assert len(reads) == 1
    finally:
        stop()


async def test_a_relay_far_behind_reads_the_table_until_it_catches_up(db: Database) -> None:
    outbox = intake_store.SqlTelemetryOutbox(db, keep=4)
    intake = intake_store.SqlTelemetryIntake(db, on_commit=outbox.remember)
    patient = uuid4()
    await intake.accept([recorded(patient, i, heart_rate=70.0) for i in range(3)], [])
    await intake.accept([recorded(patient, i, heart_rate=70.0) for i in range(3, 6)], [])
    reads, stop = _outbox_reads(db)
    try:
        # six waiting is more than the four kept: the copy was dropped, the table has them all
        handed = await outbox.pending(after_seq=0, limit=100)
        assert len(reads) == 1
        await intake.accept([recorded(patient, i, heart_rate=70.0) for i in range(6, 8)], [])
        handed += await outbox.pending(after_seq=handed[-1].seq, limit=100)
        assert len(reads) == 1  # caught up: the newest commit comes from the copy
    finally:
        stop()
    table = await intake_store.SqlTelemetryOutbox(db).pending(after_seq=0, limit=100)
    assert _same(handed) == _same(table)
    assert len(table) == 8


async def test_rows_a_bulk_insert_stores_read_back_as_core_stores_them(db: Database) -> None:
    # on SQLite the vitals insert passes its values through the column types' processors and
    # runs the driver's executemany; what it stores must be what SQLAlchemy Core stores (the
    # same text on disk: queries bind their values Core's way) and conflicts must be told
    from sqlalchemy import insert, select, text

    from healthflow.storage.bulk_insert import BulkInsert

    patient, alert = uuid4(), uuid4()

    def row(n: int, device: str) -> tuple[Any, ...]:
        at = T0 + timedelta(seconds=n, microseconds=123_456)
        return (str(uuid4()), patient, device, at, '{"spo2":97}', None, alert, "raised", at)

    bulk = BulkInsert(schema.vitals, skip_conflicts=True)
    columns = bulk.columns
    async with db.writer.begin() as conn:
        ours = [row(n, "bulk") for n in range(3)]
        assert await bulk.run(conn, ours) == 3
        core = [dict(zip(columns, row(n, "core"), strict=True)) for n in range(3)]
        await conn.execute(insert(schema.vitals), core)
        # two repeats of (device, ts) among five: three new
        again = [row(n, "bulk") for n in range(1, 6)]
        assert await bulk.run(conn, again) == 3
        assert await bulk.run(conn, []) == 0
    async with db.reader.connect() as conn:
        found = (
            await conn.execute(
                select(schema.vitals)
                .where(schema.vitals.c.patient_id == patient, schema.vitals.c.alert_id == alert)
                .order_by(schema.vitals.c.device_id, schema.vitals.c.ts)
            )
        ).all()
        if db.backend == "sqlite":  # the stored text itself, of the columns it converts
            raw = (
                await conn.execute(
                    text(
                        "SELECT device_id, patient_id, ts, alert_id, received_at FROM vitals"
                        " ORDER BY device_id, ts"
                    )
                )
            ).all()
            assert [r[1:] for r in raw if r[0] == "bulk"][:3] == [
                r[1:] for r in raw if r[0] == "core"
            ]
    stored = [r for r in found if r.device_id == "bulk"]
    assert [r.ts for r in stored] == [
        T0 + timedelta(seconds=n, microseconds=123_456) for n in range(6)
    ]
    assert all(r.received_at == r.ts and r.alert_change == "raised" for r in stored)
    assert [r.ts for r in found if r.device_id == "core"] == [r.ts for r in stored[:3]]


async def test_a_bulk_insert_returning_answers_for_the_new_rows_of_every_page(db: Database) -> None:
    # the telemetry intake's insert: it must learn the sequence number of every reading it
    # stored, and only of those, however many pages of rows a commit writes on SQLite
    from sqlalchemy import select

    from healthflow.storage.bulk_insert import PAGE_ROWS, BulkInsert

    outbox = intake_store.telemetry_outbox
    bulk = BulkInsert(
        outbox,
        skip_conflicts=True,
        columns=("event_id", "device_id", "ts", "payload", "created_at"),
        returning=("event_id", "seq"),
    )

    def row(n: int) -> tuple[Any, ...]:
        return (f"reading-{n}", "monitor-1", T0 + timedelta(seconds=n), "{}", T0)

    total = PAGE_ROWS + PAGE_ROWS // 2  # a full page and part of another
    async with db.writer.begin() as conn:
        first = await bulk.run_returning(conn, [row(n) for n in range(total)])
        # the last 100 again, with 100 new: only the new come back
        again = await bulk.run_returning(conn, [row(n) for n in range(total - 100, total + 100)])
        assert await bulk.run_returning(conn, []) == []
    assert sorted(event_id for event_id, _ in first) == sorted(f"reading-{n}" for n in range(total))
    assert sorted(event_id for event_id, _ in again) == sorted(
        f"reading-{n}" for n in range(total, total + 100)
    )
    async with db.reader.connect() as conn:
        stored = dict((await conn.execute(select(outbox.c.event_id, outbox.c.seq))).all())
    assert stored == dict(first + again)
    assert len(set(stored.values())) == total + 100
