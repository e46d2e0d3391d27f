"""Carrying recent values forward into a NEWS2 assessment, and refusing to go back in time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from healthflow.vitals.assessment import assess
from healthflow.vitals.domain import Consciousness, Reading
from healthflow.vitals.news2 import Risk
from healthflow.vitals.store import _state_from_json, _state_to_json

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
FULL = {
    "resp_rate": 16.0,
    "spo2": 98.0,
    "on_oxygen": False,
    "systolic_bp": 125.0,
    "heart_rate": 72.0,
    "consciousness": Consciousness.ALERT,
    "temperature": 36.8,
}


def test_first_full_reading_is_assessed_with_nothing_carried_or_missing() -> None:
    state, assessment = assess(None, Reading(ts=T0, **FULL))
    assert assessment is not None
    assert (assessment.total, assessment.risk) == (0, Risk.LOW)
    assert assessment.carried_forward == ()
    assert assessment.missing == ()
    assert state.assessment == assessment


def test_a_parameter_missing_now_is_taken_from_the_last_15_minutes() -> None:
    state, _ = assess(None, Reading(ts=T0, **FULL))
    _, assessment = assess(state, Reading(ts=T0 + timedelta(minutes=15), heart_rate=135.0))
    assert assessment is not None
    assert assessment.sub_scores["heart_rate"] == 3
    assert "resp_rate" in assessment.carried_forward
    assert "air_or_oxygen" in assessment.carried_forward
    assert "heart_rate" not in assessment.carried_forward
    assert assessment.missing == ()


def test_a_value_older_than_15_minutes_counts_as_missing() -> None:
    state, _ = assess(None, Reading(ts=T0, **FULL))
    later = T0 + timedelta(minutes=15, seconds=1)
    _, assessment = assess(state, Reading(ts=later, heart_rate=72.0))
    assert assessment is not None
    assert assessment.carried_forward == ()
    assert set(assessment.missing) == {
        "resp_rate",
        "spo2",
        "air_or_oxygen",
        "systolic_bp",
        "consciousness",
        "temperature",
    }


def test_carried_values_come_from_the_most_recent_reading_that_had_them() -> None:
    state, _ = assess(None, Reading(ts=T0, heart_rate=72.0))
    state, _ = assess(state, Reading(ts=T0 + timedelta(minutes=1), heart_rate=140.0))
    _, assessment = assess(state, Reading(ts=T0 + timedelta(minutes=2), spo2=98.0))
    assert assessment is not None
    assert assessment.sub_scores["heart_rate"] == 3


def test_a_reading_older_than_the_last_assessment_is_not_rescored() -> None:
    state, first = assess(None, Reading(ts=T0, **FULL))
    late_state, late = assess(state, Reading(ts=T0 - timedelta(seconds=1), heart_rate=150.0))
    assert late is None
    assert late_state == state
    assert late_state.assessment == first


def test_a_second_device_at_the_same_instant_adds_to_the_assessment() -> None:
    state, _ = assess(None, Reading(ts=T0, heart_rate=72.0))
    _, assessment = assess(state, Reading(ts=T0, resp_rate=26.0))
    assert assessment is not None
    assert assessment.sub_scores == {"heart_rate": 0, "resp_rate": 3}


def test_spo2_scale_sticks_to_the_patient_until_a_reading_changes_it() -> None:
    state, _ = assess(None, Reading(ts=T0, spo2=97.0, on_oxygen=True, spo2_scale=2))
    state, assessment = assess(state, Reading(ts=T0 + timedelta(minutes=1), spo2=97.0))
    assert assessment is not None
    assert (assessment.spo2_scale, assessment.sub_scores["spo2"]) == (2, 3)
    _, assessment = assess(state, Reading(ts=T0 + timedelta(minutes=2), spo2=97.0, spo2_scale=1))
    assert assessment is not None
    assert (assessment.spo2_scale, assessment.sub_scores["spo2"]) == (1, 0)


def test_assessment_survives_a_round_trip_through_a_dict() -> None:
    _, assessment = assess(None, Reading(ts=T0, **FULL))
    assert assessment is not None
    assert type(assessment).from_dict(assessment.to_dict()) == assessment


def test_orjson_writes_an_assessment_and_a_state_as_their_dicts() -> None:
    """The vitals store hands orjson the dataclasses and instants themselves: the JSON must be
    the bytes `to_dict()` and `isoformat()` give, with and without microseconds, carried and
    missing parameters, so stored rows read back the same."""
    state, _ = assess(None, Reading(ts=T0, **FULL))
    later = T0 + timedelta(minutes=3, microseconds=250)
    state, assessment = assess(state, Reading(ts=later, heart_rate=131.0, spo2=90.0))
    state, _ = assess(state, Reading(ts=later + timedelta(minutes=20), resp_rate=26.0))
    assert state.assessment is not None and state.assessment.missing
    for a in (assessment, state.assessment):
        assert a is not None
        assert orjson.dumps(a) == orjson.dumps(a.to_dict())
    expected = {
        "latest": {k: [v, at.isoformat()] for k, (v, at) in state.latest.items()},
        "spo2_scale": state.spo2_scale,
        "assessment": state.assessment.to_dict(),
    }
    assert _state_to_json(state) == orjson.dumps(expected).decode()
    assert _state_from_json(_state_to_json(state)) == state
