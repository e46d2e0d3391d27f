"""Physiological ranges, device naming rules, device keys, and a reading's way onto the bus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from healthflow.messaging.events import CloudEvent
from healthflow.vitals import keys
from healthflow.vitals.domain import (
    Consciousness,
    DeviceInvalid,
    Reading,
    check_device,
    check_reading,
)
from healthflow.vitals.events import RecordedReading, recorded_from_event, vital_signs_recorded
from healthflow.vitals.schemas import parse_readings_json

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


def test_a_reading_sent_with_any_offset_is_the_same_instant_in_utc() -> None:
    body = b'{"readings": [{"ts": "2026-11-25T11:00:00.5+02:00", "heart_rate": 70},'
    body += b' {"ts": "2026-11-25T09:00:00.5Z", "heart_rate": 71}]}'
    first, second = parse_readings_json(body)
    assert first.ts == second.ts == NOW + timedelta(milliseconds=500)
    assert first.ts.tzinfo is UTC and second.ts.tzinfo is UTC


def test_a_recorded_reading_comes_back_whole_from_its_event_here_and_through_bytes() -> None:
    reading = Reading(
        ts=NOW,
        heart_rate=120.0,
        spo2=91.0,
        temperature=38.4,
        consciousness=Consciousness.CONFUSION,
        on_oxygen=True,
        spo2_scale=2,
    )
    recorded = RecordedReading("r-1", "mon-1", uuid4(), reading, NOW, "W1")
    event = vital_signs_recorded(recorded)
    # in this process the consumer takes the reading the event was made from
    assert recorded_from_event(event) is recorded
    # from another process (the bytes a broker carried) it is decoded from the data
    travelled = CloudEvent.from_json(event.to_json())
    assert travelled.origin is None
    assert travelled == event
    assert recorded_from_event(travelled) == recorded
