"""The patient domain: transition table, registration rules, age bands."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from uuid import uuid4

import pytest

from healthflow.patients.domain import (
    TRANSITIONS,
    NewPatient,
    Patient,
    PatientInvalid,
    Sex,
    Status,
    TransitionRefused,
    age_band,
)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ALLOWED = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
ALL_PAIRS = [(a, b) for a in Status for b in Status]


def new_patient(**overrides: object) -> NewPatient:
    base = NewPatient("Ada", "Lovelace", date(1980, 12, 10), Sex.FEMALE, "ICU")
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def patient_in(status: Status) -> Patient:
    registered = Patient.register(new_patient(), patient_id=uuid4(), mrn="M1", at=NOW)
    return dataclasses.replace(registered, status=status)


def test_registration_starts_registered_at_version_one() -> None:
    patient = Patient.register(new_patient(), patient_id=uuid4(), mrn="M1", at=NOW)
    assert (patient.status, patient.version) == (Status.REGISTERED, 1)
    assert patient.created_at == patient.updated_at == patient.status_since == NOW


@pytest.mark.parametrize(("current", "requested"), sorted(ALLOWED))
def test_every_transition_in_the_table_is_allowed(current: Status, requested: Status) -> None:
    later = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    before = patient_in(current)
    after, change = before.change_status(requested, reason="r", source=None, at=later)
    assert after.status is requested
    assert after.version == before.version + 1
    assert after.status_since == after.updated_at == later
    assert (change.previous, change.status) == (current, requested)


@pytest.mark.parametrize(("current", "requested"), [p for p in ALL_PAIRS if p not in ALLOWED])
def test_every_transition_absent_from_the_table_is_refused(
    current: Status, requested: Status
) -> None:
    with pytest.raises(TransitionRefused) as refused:
        patient_in(current).change_status(requested, reason=None, source=None, at=NOW)
    assert refused.value.current is current and refused.value.requested is requested


def test_discharged_is_terminal() -> None:
    assert TRANSITIONS[Status.DISCHARGED] == frozenset()


def test_no_status_moves_to_itself_or_back_to_registered() -> None:
    assert all(s not in TRANSITIONS[s] for s in Status)
    assert all(Status.REGISTERED not in targets for targets in TRANSITIONS.values())


def test_every_status_but_discharged_can_become_critical() -> None:
    for status in Status:
        if status not in (Status.DISCHARGED, Status.CRITICAL):
            assert Status.CRITICAL in TRANSITIONS[status]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("given_name", "", "must not be empty"),
        ("given_name", "   ", "must not be empty"),
        ("family_name", "x" * 101, "at most 100"),
        ("ward", "", "must not be empty"),
        ("ward", "w" * 51, "at most 50"),
        ("bed", " ", "1 to 20"),
        ("mrn", "m" * 33, "1 to 32"),
        ("birth_date", date(2026, 11, 26), "future"),
        ("birth_date", date(1899, 12, 31), "before 1900"),
    ],
)
def test_registration_rules_name_the_bad_field(field: str, value: object, message: str) -> None:
    with pytest.raises(PatientInvalid) as invalid:
        Patient.register(new_patient(**{field: value}), patient_id=uuid4(), mrn="M", at=NOW)
    assert [p.field for p in invalid.value.problems] == [field]
    assert message in invalid.value.problems[0].message


def test_registration_lists_every_broken_rule_at_once() -> None:
    with pytest.raises(PatientInvalid) as invalid:
        Patient.register(
            new_patient(given_name="", family_name="", birth_date=date(2030, 1, 1)),
            patient_id=uuid4(),
            mrn="M",
            at=NOW,
        )
    assert {p.field for p in invalid.value.problems} == {"given_name", "family_name", "birth_date"}


@pytest.mark.parametrize(
    "edge", [date(1900, 1, 1), date(2026, 11, 25)], ids=["earliest", "born-today"]
)
def test_birth_date_edges_are_accepted(edge: date) -> None:
    patient = Patient.register(new_patient(birth_date=edge), patient_id=uuid4(), mrn="M", at=NOW)
    assert patient.birth_date == edge


def test_names_are_kept_exactly_as_given() -> None:
    name = "O'Brien \"Robert'); DROP TABLE patients;-- 😀 李小龍 Ωμέγα"
    patient = Patient.register(new_patient(family_name=name), patient_id=uuid4(), mrn="M", at=NOW)
    assert patient.family_name == name


def test_reason_over_500_characters_is_refused() -> None:
    with pytest.raises(PatientInvalid):
        patient_in(Status.REGISTERED).change_status(
            Status.WAITING, reason="r" * 501, source=None, at=NOW
        )


@pytest.mark.parametrize(
    ("born", "today", "band"),
    [
        (date(2026, 11, 25), date(2026, 11, 25), "0-9"),
        (date(2016, 11, 26), date(2026, 11, 25), "0-9"),
        (date(2016, 11, 25), date(2026, 11, 25), "10-19"),
        (date(1980, 12, 10), date(2026, 11, 25), "40-49"),
        (date(1936, 11, 26), date(2026, 11, 25), "80-89"),
        (date(1936, 11, 25), date(2026, 11, 25), "90+"),
        (date(1900, 1, 1), date(2026, 11, 25), "90+"),
    ],
)
def test_age_band_is_ten_years_wide_and_pools_ninety_plus(
    born: date, today: date, band: str
) -> None:
    assert age_band(born, today) == band
