"""The simulator's vitals: a stable patient stays at NEWS2 0, a deteriorating one ends high."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from healthflow.vitals.assessment import assess
from healthflow.vitals.events import reading_from_dict
from healthflow.vitals.news2 import Risk
from healthflow.vitals.simulator import VitalsGenerator

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("seed", range(20))
def test_a_stable_patient_never_scores(seed: int) -> None:
    vitals = VitalsGenerator(random.Random(seed), deteriorates=False, onset_s=0, ramp_s=60)
    state = None
    for second in range(0, 600, 5):
        state, assessment = assess(state, reading_from_dict(vitals.reading(second, T0)))
        assert assessment is not None
        assert assessment.total == 0, vitals.reading(second, T0)


@pytest.mark.parametrize("seed", range(20))
def test_a_deteriorating_patient_ends_in_high_risk(seed: int) -> None:
    vitals = VitalsGenerator(random.Random(seed), deteriorates=True, onset_s=10, ramp_s=60)
    reading = reading_from_dict(vitals.reading(75, T0 + timedelta(seconds=75)))
    _, assessment = assess(None, reading)
    assert assessment is not None
    assert assessment.risk is Risk.HIGH


def test_deterioration_starts_at_onset_and_completes_after_the_ramp() -> None:
    vitals = VitalsGenerator(random.Random(1), deteriorates=True, onset_s=10, ramp_s=60)
    assert [vitals.progress(t) for t in (0, 10, 40, 70, 500)] == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_the_same_seed_gives_the_same_vitals() -> None:
    a = VitalsGenerator(random.Random(7), deteriorates=True, onset_s=0, ramp_s=10)
    b = VitalsGenerator(random.Random(7), deteriorates=True, onset_s=0, ramp_s=10)
    assert [a.reading(t, T0) for t in range(20)] == [b.reading(t, T0) for t in range(20)]


def test_a_treated_patient_returns_to_baseline() -> None:
    vitals = VitalsGenerator(
        random.Random(1), deteriorates=True, onset_s=0, ramp_s=10, recover_at_s=20
    )
    assert [vitals.progress(t) for t in (5, 15, 20, 30)] == [0.5, 1.0, 0.0, 0.0]
