"""The store contracts (patients + outbox, analytics, dead letters) over SQLite and PostgreSQL,
each on a schema built by the Alembic migrations, not by create_all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from uuid import uuid4

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from prometheus_client import REGISTRY
from sqlalchemy import Connection, MetaData, func, select, text

from healthflow.analytics import store as analytics_schema
from healthflow.analytics.store import SqlAnalyticsStore
from healthflow.ids import uuid7
from healthflow.messaging import dead_letters as dead_letter_schema
from healthflow.messaging.dead_letters import SqlDeadLetterStore
from healthflow.patients import events as patient_events
from healthflow.patients import store as patient_schema
from healthflow.patients.domain import (
    MrnTaken,
    NewPatient,
    Patient,
    PatientChanged,
    Sex,
    Status,
)
from healthflow.patients.store import SqlOutbox, SqlPatientStore, patients
from healthflow.ports import DeadLetter
from healthflow.security import audit as audit_schema
from healthflow.storage import migrations
from healthflow.storage.engine import Database, open_database
from healthflow.vitals import alerts as alert_rules
from healthflow.vitals import intake_store
from healthflow.vitals import store as vitals_store
from healthflow.vitals.alerts import Alert
from healthflow.vitals.assessment import PatientVitals, assess
from healthflow.vitals.domain import Consciousness, Reading
from healthflow.vitals.events import RecordedReading
from healthflow.vitals.ports import Outcome
from tests.conftest import audit_trail, ephemeral_cipher
from tests.integration.conftest import migrated

CIPHER = ephemeral_cipher()

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/store.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await migrated(database_url, migrations.PATIENTS, migrations.ANALYTICS)
    yield database
    await database.dispose()


def admitted(mrn: str, at: datetime = T0, ward: str = "ICU") -> Patient:
    new = NewPatient("Ada", "Lovelace", date(1980, 12, 10), Sex.FEMALE, ward, mrn=mrn)
    return Patient.register(new, patient_id=uuid7(at), mrn=mrn, at=at)


def _schema_differences(connection: Connection) -> list[object]:
    target = MetaData()
    for metadata in (patient_schema.metadata, dead_letter_schema.metadata, audit_schema.metadata):
        for table in metadata.tables.values():
            table.to_metadata(target)
    for metadata in (
        analytics_schema.metadata,
        intake_store.intake_metadata,
        vitals_store.series_metadata,
    ):
        for table in metadata.tables.values():
            table.to_metadata(target)
    context = MigrationContext.configure(connection)
    ignored = {migrations.PATIENTS.version_table, migrations.ANALYTICS.version_table}
    return [
        d
        for d in compare_metadata(context, target)
        if not (d[0] == "remove_table" and d[1].name in ignored)
    ]


async def test_migrations_build_exactly_the_tables_the_code_declares(db: Database) -> None:
    async with db.writer.connect() as conn:
        differences = await conn.run_sync(_schema_differences)
    assert differences == []


async def test_an_analytics_database_of_its_own_gets_its_tables_and_an_audit_trail(
    database_url: str,
) -> None:
    # the split topology: the analytics service audits the vitals and alerts it serves
    database = await migrated(database_url, migrations.ANALYTICS)
    target = MetaData()
    for metadata in (
        analytics_schema.metadata,
        vitals_store.series_metadata,
        audit_schema.metadata,
    ):
        for table in metadata.tables.values():
            table.to_metadata(target)

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection)
        return [
            d
            for d in compare_metadata(context, target)
            if not (d[0] == "remove_table" and d[1].name == migrations.ANALYTICS.version_table)
        ]

    try:
        async with database.writer.connect() as conn:
            assert await conn.run_sync(differences) == []
    finally:
        await database.dispose()


async def test_migrations_are_at_head_and_a_second_upgrade_changes_nothing(db: Database) -> None:
    await migrations.require_current(db, migrations.PATIENTS)
    assert await migrations.upgrade(db, migrations.PATIENTS) == migrations.head(migrations.PATIENTS)
    assert await migrations.current(db, migrations.ANALYTICS) == migrations.head(
        migrations.ANALYTICS
    )


async def test_a_schema_behind_refuses_to_start(database_url: str) -> None:
    database = await migrated(database_url)  # nothing migrated
    try:
        with pytest.raises(migrations.SchemaBehind, match="healthflow db upgrade"):
            await migrations.require_current(database, migrations.PATIENTS)
    finally:
        await database.dispose()


async def test_a_patient_and_its_events_commit_together(db: Database) -> None:
    store = SqlPatientStore(db, cipher=CIPHER, audit=await audit_trail(db))
    patient = admitted("MRN-1")
    event = patient_events.created(patient)

    await store.add(patient, [event])

    assert await store.get(patient.id) == patient
    assert await store.history(patient.id) == [event]
    [entry] = await SqlOutbox(db, cipher=CIPHER).pending(after_seq=0, limit=10)
    assert entry.event == event


async def test_a_taken_mrn_is_refused_and_nothing_is_written(db: Database) -> None:
    store = SqlPatientStore(db, cipher=CIPHER, audit=await audit_trail(db))
    first = admitted("MRN-2")
    await store.add(first, [patient_events.created(first)])
    second = admitted("MRN-2", at=T0 + timedelta(seconds=1))

    with pytest.raises(MrnTaken):
        await store.add(second, [patient_events.created(second)])

    assert await store.get(second.id) is None
    assert len(await SqlOutbox(db, cipher=CIPHER).pending(after_seq=0, limit=10)) == 1


async def test_a_save_at_a_stale_version_is_refused(db: Database) -> None:
    store = SqlPatientStore(db, cipher=CIPHER, audit=await audit_trail(db))
    patient = admitted("MRN-3")
    await store.add(patient, [patient_events.created(patient)])
    moved, change = patient.change_status(
        Status.WAITING, reason=None, source=None, at=T0 + timedelta(minutes=1)
    )
    await store.save(
        moved, expected_version=1, events=[patient_events.status_changed(moved, change)]
    )

    with pytest.raises(PatientChanged):
        await store.save(moved, expected_version=1, events=[])

    assert (await store.get(patient.id)) == moved
    assert len(await store.history(patient.id)) == 2


async def test_pages_follow_registration_order_with_filters(db: Database) -> None:
    store = SqlPatientStore(db, cipher=CIPHER, audit=await audit_trail(db))
    registered = [
        admitted(f"MRN-P{n}", at=T0 + timedelta(seconds=n), ward="ICU" if n % 2 else "ED")
        for n in range(5)
    ]
    for patient in registered:
        await store.add(patient, [patient_events.created(patient)])

    first = await store.page(status=None, ward=None, after=None, limit=2)
    rest = await store.page(status=None, ward=None, after=first[-1].id, limit=10)
    icu = await store.page(status=Status.REGISTERED, ward="ICU", after=None, limit=10)

    assert [p.id for p in first + rest] == [p.id for p in registered]
    assert [p.mrn for p in icu] == ["MRN-P1", "MRN-P3"]


async def registered_outbox(db: Database, patients: int) -> SqlOutbox:
    """The patient outbox after `patients` registrations, one event each."""
    store = SqlPatientStore(db, cipher=CIPHER, audit=await audit_trail(db))
    for n in range(patients):
        patient = admitted(f"MRN-O{n}", at=T0 + timedelta(seconds=n))
        await store.add(patient, [patient_events.created(patient)])
    return SqlOutbox(db, cipher=CIPHER)


async def test_published_outbox_rows_leave_the_pending_list(db: Database) -> None:
    outbox = await registered_outbox(db, 3)
    pending = await outbox.pending(after_seq=0, limit=10)

    await outbox.mark_published([pending[0].seq], T0 + timedelta(minutes=1))

    assert [e.seq for e in await outbox.pending(after_seq=0, limit=10)] == [
        e.seq for e in pending[1:]
    ]
    stats = await outbox.stats()
    assert stats.pending == 2
    assert stats.oldest_created_at == pending[1].created_at


async def test_both_outboxes_mark_exactly_the_rows_they_are_given_in_any_order(
    db: Database,
) -> None:
    # a relay marks its batch by runs of consecutive numbers: a gap or an order other than
    # the table's must neither mark a row it was not given nor leave one it was
    outbox = await registered_outbox(db, 10)
    intake = intake_store.SqlTelemetryIntake(db)
    patient_id = uuid4()
    await intake.accept(
        [
            RecordedReading(
                str(uuid4()),
                "mon-r",
                patient_id,
                Reading(ts=T0 + timedelta(seconds=n), heart_rate=70.0),
                T0,
            )
            for n in range(10)
        ],
        [],
    )
    readings = intake_store.SqlTelemetryOutbox(db)
    for relayed in (outbox, readings):
        seqs = [e.seq for e in await relayed.pending(after_seq=0, limit=100)]
        assert len(seqs) == 10
        chosen = [seqs[k] for k in (8, 9, 0, 1, 2, 4, 7)]  # three runs, given out of order

        await relayed.mark_published(chosen, T0 + timedelta(minutes=1))

        left = [e.seq for e in await relayed.pending(after_seq=0, limit=100)]
        assert left == [seqs[k] for k in (3, 5, 6)]
        assert (await relayed.stats()).pending == 3


async def test_confirmations_that_arrive_together_are_marked_in_one_transaction(
    db: Database,
) -> None:
    # the relay confirms batches one after another: marks that wait for the one writer
    # together commit together, each row with the instant its own batch was confirmed at
    outbox = await registered_outbox(db, 6)
    seqs = [e.seq for e in await outbox.pending(after_seq=0, limit=10)]
    labels = {"store": "patients.outbox.marks"}
    groups = REGISTRY.get_sample_value("healthflow_group_commit_size_count", labels) or 0
    confirmed = [(seqs[0:2], T0), (seqs[2:3], T0 + timedelta(seconds=1)), (seqs[4:6], T0)]

    await asyncio.gather(*(outbox.mark_published(batch, at) for batch, at in confirmed))

    assert REGISTRY.get_sample_value("healthflow_group_commit_size_count", labels) == groups + 1
    assert [e.seq for e in await outbox.pending(after_seq=0, limit=10)] == [seqs[3]]
    table = patient_schema.patient_events
    async with db.reader.connect() as conn:
        marked = dict((await conn.execute(select(table.c.seq, table.c.published_at))).all())
    assert marked == {
        seqs[0]: T0,
        seqs[1]: T0,
        seqs[2]: T0 + timedelta(seconds=1),
        seqs[3]: None,
        seqs[4]: T0,
        seqs[5]: T0,
    }


async def test_a_marking_that_fails_raises_to_every_waiting_relay_and_marks_nothing(
    tmp_path: Path,
) -> None:
    # the relay sends rows whose marking failed again, so the failure must reach each caller
    db = await migrated(f"sqlite+aiosqlite:///{tmp_path}/marks.db", migrations.PATIENTS)
    try:
        outbox = await registered_outbox(db, 4)
        seqs = [e.seq for e in await outbox.pending(after_seq=0, limit=10)]
        async with db.writer.connect() as conn:  # the one writer connection refuses writes
            await conn.execute(text("PRAGMA query_only = ON"))

        results = await asyncio.gather(
            outbox.mark_published(seqs[:2], T0),
            outbox.mark_published(seqs[2:], T0),
            return_exceptions=True,
        )

        assert all(isinstance(r, Exception) and "readonly" in str(r) for r in results)
        async with db.writer.connect() as conn:
            await conn.execute(text("PRAGMA query_only = OFF"))
        assert [e.seq for e in await outbox.pending(after_seq=0, limit=10)] == seqs
        await outbox.mark_published(seqs, T0)  # and the next attempt marks them
        assert await outbox.pending(after_seq=0, limit=10) == []
    finally:
        await db.dispose()


async def test_concurrent_saves_of_one_patient_let_exactly_one_win(db: Database) -> None:
    store = SqlPatientStore(db, cipher=CIPHER, audit=await audit_trail(db))
    patient = admitted("MRN-C")
    await store.add(patient, [patient_events.created(patient)])
    moves = [
        patient.change_status(s, reason=None, source=None, at=T0 + timedelta(minutes=1))[0]
        for s in (Status.WAITING, Status.ADMITTED, Status.CRITICAL)
    ]

    results = await asyncio.gather(
        *(store.save(m, expected_version=1, events=[]) for m in moves), return_exceptions=True
    )

    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, PatientChanged) for r in results if r is not None)


async def test_audit_records_that_arrive_together_commit_together_in_order(db: Database) -> None:
    trail = await audit_trail(db)
    actors = [audit_schema.Actor(f"reader-{i}", "nurse", request_id=f"r{i}") for i in range(20)]
    entry = audit_schema.AuditEntry("GET /api/patients", "patient", None, audit_schema.SUCCESS)
    groups = REGISTRY.get_sample_value("healthflow_group_commit_size_count", {"store": "audit"})

    records = await asyncio.gather(*(trail.record(entry, actor) for actor in actors))

    # one transaction for the twenty, their records chained in the order they were asked for
    after = REGISTRY.get_sample_value("healthflow_group_commit_size_count", {"store": "audit"})
    assert after == (groups or 0) + 1
    assert [r.subject for r in records] == [a.subject for a in actors]
    assert [r.seq for r in records] == list(range(1, 21))
    assert [r.request_id for r in await trail.search()] == [f"r{i}" for i in range(20)]
    assert (await trail.verify()).ok


async def test_analytics_records_an_event_once(db: Database) -> None:
    store = SqlAnalyticsStore(db)
    patient = admitted("MRN-A")
    event = patient_events.created(patient)

    assert await store.record(event, processed_at=T0) is True
    assert await store.record(event, processed_at=T0) is False

    summary = await store.dashboard(first_day=T0.date(), last_day=T0.date())
    assert summary["patients_total"] == 1
    assert summary["events_processed_total"] == 1
    assert summary["patients_by_status"]["registered"] == 1


async def test_analytics_rollups_follow_a_status_change(db: Database) -> None:
    store = SqlAnalyticsStore(db)
    patient = admitted("MRN-B")
    moved, change = patient.change_status(
        Status.IN_TREATMENT, reason=None, source=None, at=T0 + timedelta(minutes=30)
    )
    await store.record(patient_events.created(patient), processed_at=T0)
    await store.record(patient_events.status_changed(moved, change), processed_at=T0)

    summary = await store.dashboard(first_day=T0.date(), last_day=T0.date())
    assert summary["patients_by_status"]["registered"] == 0
    assert summary["patients_by_status"]["in_treatment"] == 1
    assert summary["average_wait_minutes"] == 30.0


# a reading in every parameter's worst band (NEWS2 high: a critical alert) and one of NEWS2 5
# (medium: an urgent alert)
HIGH = {
    "heart_rate": 140.0,
    "resp_rate": 28.0,
    "spo2": 88.0,
    "systolic_bp": 85.0,
    "temperature": 39.5,
    "consciousness": Consciousness.VOICE,
    "on_oxygen": True,
}
MEDIUM = {**HIGH, "heart_rate": 100.0, "resp_rate": 22.0, "spo2": 95.0, "systolic_bp": 124.0}
MEDIUM.update(temperature=38.5, consciousness=Consciousness.ALERT, on_oxygen=False)


def raising(
    recorded: RecordedReading, state: PatientVitals | None, active: Alert | None
) -> tuple[PatientVitals, Outcome]:
    """The monitor's own rules: score the reading, raise or update the patient's alert."""
    new_state, assessment = assess(state, recorded.reading)
    assert assessment is not None
    alert, change = alert_rules.on_assessment(
        active, assessment, patient_id=recorded.patient_id, ward="ICU", new_id=uuid4
    )
    return new_state, Outcome(assessment, alert, change)


async def raise_alert(store: vitals_store.SqlVitalsStore, at: datetime, values: dict) -> None:
    patient = uuid4()
    reading = RecordedReading(str(uuid4()), f"mon-{patient}", patient, Reading(ts=at, **values), at)
    await store.record_many([reading], raising, wards={patient: "ICU"})


async def test_alerts_raised_per_day_count_utc_days_of_the_window_by_severity(
    db: Database,
) -> None:
    store = vitals_store.SqlVitalsStore(db)
    day = date(2026, 11, 24)
    midnight = datetime(2026, 11, 25, tzinfo=UTC)
    await raise_alert(store, midnight - timedelta(microseconds=1), HIGH)  # the 24th, last instant
    # 01:30 in UTC+2 is 23:30 UTC the day before
    await raise_alert(
        store, datetime(2026, 11, 25, 1, 30, tzinfo=timezone(timedelta(hours=2))), HIGH
    )
    await raise_alert(store, midnight, MEDIUM)  # the 25th, first instant
    await raise_alert(store, midnight + timedelta(hours=12), HIGH)
    await raise_alert(store, midnight - timedelta(days=1, microseconds=1), HIGH)  # the 22nd
    await raise_alert(store, midnight + timedelta(days=1), HIGH)  # the 26th
    # three readings of one patient: one alert, kept current, not three
    patient = uuid4()
    for n in range(3):
        at = midnight + timedelta(hours=6, minutes=n)
        reading = RecordedReading(str(uuid4()), "mon-x", patient, Reading(ts=at, **HIGH), at)
        await store.record_many([reading], raising, wards={patient: "ICU"})

    raised = await store.raised_by_day(first_day=day, last_day=day + timedelta(days=1))

    assert raised == {
        day: {"critical": 2},
        day + timedelta(days=1): {"urgent": 1, "critical": 2},
    }
    assert await store.raised_by_day(first_day=date(2026, 12, 1), last_day=date(2026, 12, 7)) == {}


async def test_alerts_per_day_read_the_window_through_the_opened_at_index(db: Database) -> None:
    query = vitals_store.SqlVitalsStore(db).raised_by_day_query(
        first_day=date(2026, 11, 24), last_day=date(2026, 11, 25)
    )
    async with db.writer.connect() as conn:
        if db.backend == "postgresql":
            # the tables are tiny here: forbid the full scan to see whether the index can serve
            await conn.execute(text("SET enable_seqscan = off"))
            explain = "EXPLAIN "
        else:
            explain = "EXPLAIN QUERY PLAN "
        compiled = query.compile(conn.engine, compile_kwargs={"literal_binds": True})
        plan = " ".join(str(row[-1]) for row in await conn.execute(text(explain + str(compiled))))
    assert "ix_alerts_opened_at" in plan


async def test_dead_letters_are_listed_newest_first(db: Database) -> None:
    store = SqlDeadLetterStore(db)
    patient = admitted("MRN-D")
    for n in range(3):
        event = patient_events.created(patient)
        await store.add(DeadLetter("analytics", event, f"error {n}", 3, T0))

    listed = await store.list(group="analytics", limit=2)
    assert [d.error for d in listed] == ["error 2", "error 1"]
    assert await store.count() == 3
    assert await store.list(group="other", limit=10) == []


async def test_lists_go_to_the_read_url_one_patient_and_writes_to_the_primary(
    postgres_url: str, second_postgres_url: str
) -> None:
    # a "replica" that never receives the write shows which engine each call used
    for url in (postgres_url, second_postgres_url):
        await (await migrated(url, migrations.PATIENTS)).dispose()
    db = open_database(postgres_url, read_url=second_postgres_url)
    store = SqlPatientStore(db, cipher=CIPHER, audit=await audit_trail(db))
    patient = admitted("MRN-R")
    try:
        await store.add(patient, [patient_events.created(patient)])

        # lists come from the replica, which (in this test) never catches up
        assert await store.page(status=None, ward=None, after=None, limit=10) == []
        # one patient is read from the primary: a read after a change always sees it
        fetched = await store.get(patient.id)
        assert fetched is not None and fetched.version == patient.version
        async with db.writer.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(patients)) == 1
    finally:
        await db.dispose()
