"""Analytics rollups: exactly-once effect per event id, robust to out-of-order delivery."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from healthflow.analytics import store as analytics_schema
from healthflow.analytics.store import SqlAnalyticsStore
from healthflow.messaging.events import CloudEvent
from healthflow.patients import events
from healthflow.patients.domain import NewPatient, Patient, Sex, Status
from healthflow.storage.engine import open_database

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
DAY = T0.date()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlAnalyticsStore]:
    db = open_database(f"sqlite+aiosqlite:///{tmp_path}/a.db")
    await db.create_schema(analytics_schema.metadata)
    yield SqlAnalyticsStore(db)
    await db.dispose()


def story(*moves: tuple[Status, int]) -> list[CloudEvent]:
    """A patient's events: registration at T0, then each move `minutes` after T0."""
    new = NewPatient("A", "B", date(1970, 1, 1), Sex.MALE, "ED")
    patient = Patient.register(new, patient_id=uuid4(), mrn="M", at=T0)
    out = [events.created(patient)]
    for status, minutes in moves:
        patient, change = patient.change_status(
            status, reason=None, source=None, at=T0 + timedelta(minutes=minutes)
        )
        out.append(events.status_changed(patient, change))
    return out


async def summary(store: SqlAnalyticsStore) -> dict:  # type: ignore[type-arg]
    return await store.dashboard(first_day=DAY - timedelta(days=6), last_day=DAY)


async def test_each_event_counts_once_however_often_it_is_delivered(
    store: SqlAnalyticsStore,
) -> None:
    evs = story((Status.WAITING, 5), (Status.IN_TREATMENT, 30))
    first = [await store.record(e, processed_at=T0) for e in evs]
    again = [await store.record(e, processed_at=T0) for e in evs]
    assert first == [True, True, True] and again == [False, False, False]
    s = await summary(store)
    assert s["patients_total"] == 1
    assert s["events_processed_total"] == 3
    assert s["patients_by_status"]["in_treatment"] == 1
    assert sum(s["patients_by_status"].values()) == 1
    assert s["registrations_by_day"][-1] == {"day": DAY.isoformat(), "count": 1}
    assert s["events_by_type_by_day"][-1]["counts"] == {
        "PatientCreated": 1,
        "PatientStatusUpdated": 2,
    }
    assert s["average_wait_minutes"] == 30.0


async def test_out_of_order_events_never_move_status_backwards(store: SqlAnalyticsStore) -> None:
    created, waiting, critical = story((Status.WAITING, 5), (Status.CRITICAL, 10))
    for e in (critical, created, waiting):
        await store.record(e, processed_at=T0)
    s = await summary(store)
    assert s["patients_by_status"]["critical"] == 1 == s["critical_now"]
    assert sum(s["patients_by_status"].values()) == 1
    assert s["patients_total"] == 1
    assert s["registrations_by_day"][-1]["count"] == 1


async def test_wait_is_counted_only_for_the_first_treatment(store: SqlAnalyticsStore) -> None:
    evs = story((Status.IN_TREATMENT, 12), (Status.STABLE, 20), (Status.IN_TREATMENT, 90))
    for e in evs:
        await store.record(e, processed_at=T0)
    s = await summary(store)
    assert s["average_wait_minutes"] == 12.0 and s["waits_counted"] == 1


async def test_average_wait_spans_patients(store: SqlAnalyticsStore) -> None:
    for minutes in (10, 20, 60):
        for e in story((Status.WAITING, 1), (Status.IN_TREATMENT, minutes)):
            await store.record(e, processed_at=T0)
    s = await summary(store)
    assert s["average_wait_minutes"] == 30.0 and s["waits_counted"] == 3


async def test_days_outside_the_window_are_not_reported(store: SqlAnalyticsStore) -> None:
    (old,) = story()
    old = dataclasses.replace(
        old,
        time=T0 - timedelta(days=30),
        data={**old.data, "registered_at": (T0 - timedelta(days=30)).isoformat()},
    )
    await store.record(old, processed_at=T0)
    s = await summary(store)
    assert [d["count"] for d in s["registrations_by_day"]] == [0] * 7
    assert s["patients_total"] == 1


async def test_empty_store_reports_zeroes_for_every_day_and_status(
    store: SqlAnalyticsStore,
) -> None:
    s = await summary(store)
    assert s["patients_total"] == 0 and s["average_wait_minutes"] is None
    assert len(s["registrations_by_day"]) == 7
    assert set(s["patients_by_status"]) == {st.value for st in Status}


async def test_a_batch_has_the_same_effect_as_one_by_one(
    store: SqlAnalyticsStore, tmp_path: Path
) -> None:
    stories = [
        story((Status.WAITING, 3), (Status.IN_TREATMENT, 25), (Status.CRITICAL, 40)),
        story((Status.IN_TREATMENT, 5), (Status.STABLE, 9)),
        story((Status.DISCHARGED, 2)),
    ]
    interleaved = [
        e
        for group in zip(*[s + [None] * 3 for s in stories], strict=False)
        for e in group
        if e is not None
    ]
    one_db = open_database(f"sqlite+aiosqlite:///{tmp_path}/one.db")
    await one_db.create_schema(analytics_schema.metadata)
    one_by_one = SqlAnalyticsStore(one_db)
    for e in interleaved:
        await one_by_one.record(e, processed_at=T0)
    flags = await store.record_many(interleaved, processed_at=T0)
    assert all(flags)
    assert await summary(store) == await summary(one_by_one)
    await one_db.dispose()


async def test_a_batch_skips_events_seen_before_and_repeats_within_it(
    store: SqlAnalyticsStore,
) -> None:
    created, waiting = story((Status.WAITING, 3))
    await store.record(created, processed_at=T0)
    flags = await store.record_many([created, waiting, waiting], processed_at=T0)
    assert flags == [False, True, False]
    s = await summary(store)
    assert s["events_processed_total"] == 2 and s["patients_by_status"]["waiting"] == 1


def test_a_stored_state_row_carries_every_field_of_the_state() -> None:
    from healthflow.analytics.projections import PatientState
    from healthflow.analytics.store import state_row

    state = PatientState(
        str(uuid4()), "ICU", "admitted", 3, datetime(2026, 12, 1, tzinfo=UTC), None
    )
    assert state_row(state) == dataclasses.asdict(state)
