"""NEWS2 against the RCP chart: every band edge of every parameter, both SpO2 scales."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthflow.vitals import news2
from healthflow.vitals.domain import Consciousness
from healthflow.vitals.news2 import Observations, Risk


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3)],
)
def test_respiration_rate_bands(rate: float, expected: int) -> None:
    assert news2.resp_rate_score(rate) == expected


@pytest.mark.parametrize(
    ("spo2", "expected"),
    [(50, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)],
)
def test_spo2_scale_1_bands(spo2: float, expected: int) -> None:
    assert news2.spo2_scale1_score(spo2) == expected


@pytest.mark.parametrize(
    ("spo2", "on_oxygen", "expected"),
    [
        (50, False, 3),
        (83, False, 3),
        (84, False, 2),
        (85, False, 2),
        (86, False, 1),
        (87, False, 1),
        (88, False, 0),
        (92, False, 0),
        # on air, anything from 93% up scores 0 on scale 2
        (93, False, 0),
        (97, False, 0),
        (100, False, 0),
        # on oxygen the low bands are the same ...
        (83, True, 3),
        (84, True, 2),
        (86, True, 1),
        (88, True, 0),
        (92, True, 0),
        # ... and above the 88-92% target it means too much oxygen
        (93, True, 1),
        (94, True, 1),
        (95, True, 2),
        (96, True, 2),
        (97, True, 3),
        (100, True, 3),
    ],
)
def test_spo2_scale_2_bands(spo2: float, on_oxygen: bool, expected: int) -> None:
    assert news2.spo2_scale2_score(spo2, on_oxygen=on_oxygen) == expected


@pytest.mark.parametrize(("on_oxygen", "expected"), [(False, 0), (True, 2)])
def test_air_or_oxygen(on_oxygen: bool, expected: int) -> None:
    assert news2.air_or_oxygen_score(on_oxygen) == expected


@pytest.mark.parametrize(
    ("pressure", "expected"),
    [
        (40, 3),
        (90, 3),
        (91, 2),
        (100, 2),
        (101, 1),
        (110, 1),
        (111, 0),
        (219, 0),
        (220, 3),
        (280, 3),
    ],
)
def test_systolic_bp_bands(pressure: float, expected: int) -> None:
    assert news2.systolic_bp_score(pressure) == expected


@pytest.mark.parametrize(
    ("pulse", "expected"),
    [
        (0, 3),
        (40, 3),
        (41, 1),
        (50, 1),
        (51, 0),
        (90, 0),
        (91, 1),
        (110, 1),
        (111, 2),
        (130, 2),
        (131, 3),
        (220, 3),
    ],
)
def test_pulse_bands(pulse: float, expected: int) -> None:
    assert news2.heart_rate_score(pulse) == expected


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (Consciousness.ALERT, 0),
        (Consciousness.CONFUSION, 3),
        (Consciousness.VOICE, 3),
        (Consciousness.PAIN, 3),
        (Consciousness.UNRESPONSIVE, 3),
    ],
)
def test_consciousness(level: Consciousness, expected: int) -> None:
    assert news2.consciousness_score(level) == expected


@pytest.mark.parametrize(
    ("celsius", "expected"),
    [
        (30.0, 3),
        (35.0, 3),
        (35.1, 1),
        (36.0, 1),
        (36.1, 0),
        (38.0, 0),
        (38.1, 1),
        (39.0, 1),
        (39.1, 2),
        (42.0, 2),
    ],
)
def test_temperature_bands(celsius: float, expected: int) -> None:
    assert news2.temperature_score(celsius) == expected


@pytest.mark.parametrize(
    ("score", "value", "expected"),
    [
        # values between chart rows are rounded as a clinician charts them, half up
        (news2.resp_rate_score, 8.4, 3),
        (news2.resp_rate_score, 8.5, 1),
        (news2.heart_rate_score, 90.49, 0),
        (news2.heart_rate_score, 90.5, 1),
        (news2.spo2_scale1_score, 95.5, 0),
        (news2.systolic_bp_score, 219.5, 3),
        (news2.temperature_score, 35.04, 3),
        (news2.temperature_score, 35.05, 1),
        (news2.temperature_score, 38.05, 1),
    ],
)
def test_values_between_rows_round_half_up(score: object, value: float, expected: int) -> None:
    assert callable(score)
    assert score(value) == expected


def test_scale_2_is_used_only_when_the_patient_has_it() -> None:
    on_oxygen_at_97 = {"spo2": 97.0, "on_oxygen": True}
    assert news2.score(Observations(**on_oxygen_at_97, spo2_scale=1)).sub_scores["spo2"] == 0
    assert news2.score(Observations(**on_oxygen_at_97, spo2_scale=2)).sub_scores["spo2"] == 3


def test_scale_2_with_oxygen_unknown_scores_as_air() -> None:
    result = news2.score(Observations(spo2=97.0, spo2_scale=2))
    assert result.sub_scores == {"spo2": 0}
    assert "air_or_oxygen" in result.missing


def test_unknown_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="spo2_scale"):
        news2.score(Observations(spo2=97.0, spo2_scale=3))


def test_a_healthy_adult_scores_zero_and_low() -> None:
    result = news2.score(
        Observations(
            resp_rate=16,
            spo2=98,
            on_oxygen=False,
            systolic_bp=125,
            heart_rate=72,
            consciousness=Consciousness.ALERT,
            temperature=36.8,
        )
    )
    assert (result.total, result.risk, result.missing) == (0, Risk.LOW, ())


def test_missing_parameters_are_listed_and_not_scored() -> None:
    result = news2.score(Observations(heart_rate=135))
    assert result.sub_scores == {"heart_rate": 3}
    assert result.missing == (
        "resp_rate",
        "spo2",
        "air_or_oxygen",
        "systolic_bp",
        "consciousness",
        "temperature",
    )


@pytest.mark.parametrize(
    ("sub_scores", "expected"),
    [
        ({}, Risk.LOW),
        ({"heart_rate": 1, "temperature": 1, "resp_rate": 2}, Risk.LOW),  # 4
        ({"consciousness": 3}, Risk.LOW_MEDIUM),  # 3 in one parameter
        ({"resp_rate": 3, "heart_rate": 1}, Risk.LOW_MEDIUM),  # 4 with a red score
        ({"resp_rate": 2, "spo2": 2, "heart_rate": 1}, Risk.MEDIUM),  # 5
        ({"resp_rate": 3, "spo2": 2}, Risk.MEDIUM),  # 5 with a red score is still medium
        ({"resp_rate": 2, "spo2": 2, "heart_rate": 2}, Risk.MEDIUM),  # 6
        ({"resp_rate": 3, "spo2": 2, "heart_rate": 2}, Risk.HIGH),  # 7
        ({"resp_rate": 3, "spo2": 3, "heart_rate": 3, "consciousness": 3}, Risk.HIGH),
    ],
)
def test_clinical_risk_follows_the_rcp_thresholds(
    sub_scores: dict[str, int], expected: Risk
) -> None:
    assert news2.risk_of(sum(sub_scores.values()), sub_scores) is expected


observations = st.builds(
    Observations,
    resp_rate=st.none() | st.floats(0, 80),
    spo2=st.none() | st.floats(0, 100),
    on_oxygen=st.none() | st.booleans(),
    systolic_bp=st.none() | st.floats(0, 300),
    heart_rate=st.none() | st.floats(0, 300),
    consciousness=st.none() | st.sampled_from(Consciousness),
    temperature=st.none() | st.floats(25, 45),
    spo2_scale=st.sampled_from([1, 2]),
)


@given(observations)
def test_total_is_the_sum_of_the_sub_scores(obs: Observations) -> None:
    result = news2.score(obs)
    assert result.total == sum(result.sub_scores.values())
    assert set(result.sub_scores) | set(result.missing) == set(news2.PARAMETERS)
    assert all(0 <= s <= 3 for s in result.sub_scores.values())


@given(observations)
def test_risk_class_follows_the_published_rules(obs: Observations) -> None:
    result = news2.score(obs)
    red = any(s == 3 for s in result.sub_scores.values())
    if result.total >= 7:
        assert result.risk is Risk.HIGH
    elif result.total >= 5:
        assert result.risk is Risk.MEDIUM
    elif red:
        assert result.risk is Risk.LOW_MEDIUM
    else:
        assert result.risk is Risk.LOW


@given(st.floats(0, 100), st.booleans())
def test_scale_2_never_scores_higher_than_scale_1_below_its_target(
    spo2: float, on_oxygen: bool
) -> None:
    # scale 2 accepts a lower target, so for the same low value it never scores higher
    if spo2 < 88:
        assert news2.spo2_scale2_score(spo2, on_oxygen=on_oxygen) <= news2.spo2_scale1_score(spo2)


@given(st.floats(min_value=-1000, max_value=1000, allow_nan=False))
def test_whole_number_rounding_is_half_away_from_zero_on_the_written_value(value: float) -> None:
    # the chart's rule, spelled out with Decimal on the value as written; _whole does it faster
    written = Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert news2._whole(value) == int(written)


@given(st.floats(min_value=-1000, max_value=1000, allow_nan=False))
def test_temperature_bands_apply_to_the_value_rounded_to_tenths_half_up(celsius: float) -> None:
    # the chart's rule with Decimal on the value as written; temperature_score does it faster
    written = Decimal(str(celsius)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    bands = ((Decimal("35.0"), 3), (Decimal("36.0"), 1), (Decimal("38.0"), 0), (Decimal("39.0"), 1))
    expected = next((points for top, points in bands if written <= top), 2)
    assert news2.temperature_score(celsius) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (20.5, 21),
        (20.49999999999999, 20),
        (0.49999999999999994, 0),
        (24.5, 25),
        (8.5, 9),
        (-2.5, -3),
    ],
)
def test_whole_number_rounding_edges(value: float, expected: int) -> None:
    assert news2._whole(value) == expected
