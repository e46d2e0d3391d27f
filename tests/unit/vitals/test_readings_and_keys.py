"""Physiological ranges, device naming rules and device keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from healthflow.vitals import keys
from healthflow.vitals.domain import DeviceInvalid, Reading, check_device, check_reading

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("heart_rate", -1.0),
        ("heart_rate", 301.0),
        ("resp_rate", 81.0),
        ("spo2", 100.5),
        ("spo2", -0.1),
        ("systolic_bp", 301.0),
        ("diastolic_bp", 251.0),
        ("temperature", 24.9),
        ("temperature", 45.1),
    ],
)
def test_values_outside_the_physiological_range_are_refused(field: str, value: float) -> None:
    problems = check_reading(Reading(ts=NOW, **{field: value}), now=NOW)
    assert [(p.field, p.reason) for p in problems] == [(field, "out_of_range")]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("heart_rate", 0.0),
        ("heart_rate", 300.0),
        ("spo2", 100.0),
        ("temperature", 25.0),
        ("temperature", 45.0),
    ],
)
def test_range_limits_themselves_are_accepted(field: str, value: float) -> None:
    assert check_reading(Reading(ts=NOW, **{field: value}), now=NOW) == []


def test_diastolic_at_or_above_systolic_is_implausible() -> None:
    problems = check_reading(Reading(ts=NOW, systolic_bp=80.0, diastolic_bp=80.0), now=NOW)
    assert [(p.field, p.reason) for p in problems] == [("diastolic_bp", "implausible")]


def test_a_reading_from_the_future_is_refused_beyond_the_allowed_skew() -> None:
    ahead = Reading(ts=NOW + timedelta(minutes=5, seconds=1), heart_rate=70.0)
    skewed = Reading(ts=NOW + timedelta(minutes=5), heart_rate=70.0)
    assert [p.reason for p in check_reading(ahead, now=NOW)] == ["in_future"]
    assert check_reading(skewed, now=NOW) == []


def test_a_reading_without_measurements_is_refused() -> None:
    assert [p.reason for p in check_reading(Reading(ts=NOW), now=NOW)] == ["empty"]


@pytest.mark.parametrize(
    "device_id", ["", "a/b", "dev+1", "dev#1", "x" * 129, "with space", "ünïcode"]
)
def test_device_ids_mqtt_topics_cannot_carry_are_refused(device_id: str) -> None:
    with pytest.raises(DeviceInvalid):
        check_device(device_id, "monitor")


@pytest.mark.parametrize("device_id", ["mon-1", "ICU.bed-4:spo2", "a", "x" * 128, "dev_1@ward=3"])
def test_device_ids_in_iot_hub_style_are_accepted(device_id: str) -> None:
    check_device(device_id, "monitor")


def test_a_key_verifies_against_its_own_hash_only() -> None:
    key = keys.new_key()
    stored = keys.hash_key(key)
    assert keys.verify_key(key, stored)
    assert not keys.verify_key(keys.new_key(), stored)
    assert not keys.verify_key(key[:-1], stored)
    assert key not in stored


def test_the_same_key_hashes_differently_per_device() -> None:
    key = keys.new_key()
    assert keys.hash_key(key) != keys.hash_key(key)


@pytest.mark.parametrize("stored", [None, "", "garbage", "md5$abc$def", "hmac-sha256$!!$??"])
def test_nothing_verifies_against_a_missing_or_broken_hash(stored: str | None) -> None:
    assert not keys.verify_key(keys.new_key(), stored)


def test_keys_carry_256_random_bits() -> None:
    assert len(keys.new_key()) == 43
    assert keys.new_key() != keys.new_key()
