"""CloudEvents envelopes and the patient events' de-identified content."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta, timezone
from uuid import uuid4

import orjson
import pytest

from healthflow.ids import uuid7
from healthflow.messaging.events import CloudEvent, MalformedEvent, batch_to_json
from healthflow.patients import events
from healthflow.patients.domain import NewPatient, Patient, Sex, Status

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def a_patient() -> Patient:
    new = NewPatient("Ada", "Lovelace", date(1980, 12, 10), Sex.FEMALE, "ICU", bed="4")
    return Patient.register(new, patient_id=uuid4(), mrn="MRN-1", at=NOW)


def test_created_event_is_a_cloudevent_about_the_patient() -> None:
    patient = a_patient()
    event = events.created(patient).to_dict()
    assert event["specversion"] == "1.0"
    assert event["type"] == "PatientCreated"
    assert event["subject"] == str(patient.id)
    assert event["source"] == "/healthflow/patients"
    assert event["datacontenttype"] == "application/json"
    assert {"id", "time", "data"} <= event.keys()


def test_patient_events_carry_no_names_mrn_or_birth_date() -> None:
    patient = a_patient()
    moved, change = patient.change_status(Status.CRITICAL, reason="r", source="s", at=NOW)
    for event in (events.created(patient), events.status_changed(moved, change)):
        text = event.to_json().decode()
        for secret in ("Ada", "Lovelace", "MRN-1", "1980-12-10"):
            assert secret not in text
        assert event.data["age_band"] == "40-49"


def test_a_move_into_critical_is_a_patient_critical_event() -> None:
    patient = a_patient()
    moved, change = patient.change_status(Status.CRITICAL, reason="r", source="s", at=NOW)
    assert events.status_changed(moved, change).type == "PatientCritical"
    moved, change = patient.change_status(Status.WAITING, reason=None, source=None, at=NOW)
    assert events.status_changed(moved, change).type == "PatientStatusUpdated"


def test_cloudevent_round_trips_through_json() -> None:
    event = events.created(a_patient())
    assert CloudEvent.from_json(event.to_json()) == event


@pytest.mark.parametrize(
    "time",
    [
        NOW,
        datetime(2026, 11, 25, 9, 0, 0, 5, tzinfo=UTC),
        datetime(2026, 11, 25, 9, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 11, 25, 14, 30, 0, 250000, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2026, 11, 25, 4, 0, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_an_event_s_json_and_its_dict_write_its_time_alike(time: datetime) -> None:
    # the JSON is written with the datetime itself (orjson), the dict with isoformat(): a
    # consumer reading either must find the same text
    event = dataclasses.replace(events.created(a_patient()), time=time)
    assert orjson.loads(event.to_json()) == event.to_dict()
    assert orjson.loads(batch_to_json([event, event])) == [event.to_dict()] * 2
    assert event.to_dict()["time"] == time.isoformat()


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[]", b'{"specversion": "0.3"}', b'{"specversion": "1.0", "id": "x"}'],
)
def test_malformed_events_are_refused(payload: bytes) -> None:
    with pytest.raises(MalformedEvent):
        CloudEvent.from_json(payload)


def test_uuid7_is_time_ordered_and_versioned() -> None:
    earlier, later = uuid7(NOW), uuid7(datetime(2026, 11, 25, 9, 0, 1, tzinfo=UTC))
    assert earlier.version == 7 and later.version == 7
    assert earlier < later
    assert int(earlier.hex[:12], 16) == int(NOW.timestamp() * 1000)
