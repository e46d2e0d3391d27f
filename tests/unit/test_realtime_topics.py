"""Topic names clients may use, and the topics each message belongs to."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from healthflow.patients.domain import MAX_WARD_LENGTH
from healthflow.realtime.topics import (
    TopicInvalid,
    parse_topic,
    parse_topics,
    topics_for,
    ward_name,
    ward_topic,
)

PID = str(uuid.uuid4())
P = f"patient:{PID}"
ICU = {"patient_id": PID, "ward": "ICU"}


@pytest.mark.parametrize(
    "topic",
    [
        "patients",
        "alerts",
        "metrics",
        "ward:ICU",
        "ward:B 2",
        "ward:a.b-c_d",
        "ward: ICU",
        "ward:A%26E",
        "ward:St Mary%27s",
        f"patient:{PID}",
    ],
)
def test_documented_topics_are_accepted(topic: str) -> None:
    assert parse_topic(topic) == topic


def test_patient_topics_are_canonicalised() -> None:
    assert parse_topic(f"patient:{PID.upper()}") == f"patient:{PID}"


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "Patients",
        "weather",
        "ward:",
        "ward:   ",
        "ward:%20",
        "ward:" + "x" * 65,
        "ward:A&E",  # a character outside the plain set must be encoded
        "ward:A,E",
        "ward:50%",  # a % that is not an escape
        "ward:%2",
        "ward:%zz",
        "ward:%FF",  # not UTF-8
        "ward:Ward%0",
        "patient:42",
        7,
        None,
    ],
)
def test_anything_else_is_refused(topic: Any) -> None:
    with pytest.raises(TopicInvalid):
        parse_topic(topic)


@pytest.mark.parametrize(
    ("ward", "topic"),
    [
        ("ICU", "ward:ICU"),
        ("B 2", "ward:B 2"),
        ("A&E", "ward:A%26E"),
        ("50%", "ward:50%25"),
        ("St Mary's", "ward:St Mary%27s"),
        ("Kinder/Jugend", "ward:Kinder%2FJugend"),
        ("Åsa,2", "ward:%C3%85sa%2C2"),
        ("病棟", "ward:%E7%97%85%E6%A3%9F"),
        (" ICU", "ward: ICU"),
    ],
)
def test_any_ward_name_has_one_topic_that_names_it_back(ward: str, topic: str) -> None:
    assert ward_topic(ward) == topic
    assert parse_topic(topic) == topic
    assert ward_name(topic) == ward


def test_escapes_are_written_one_way() -> None:
    # lower-case hex and needless escapes name the same ward: answered in the one canonical form
    assert parse_topic("ward:A%26e") == "ward:A%26e"  # plain "e" stays; "%26" is the escape
    assert parse_topic("ward:a%2fb") == "ward:a%2Fb"
    assert parse_topic("ward:%49CU") == "ward:ICU"


@pytest.mark.parametrize(
    "ward",
    ["A&E", "x" * MAX_WARD_LENGTH, "Ward 7 (east) \u2013 step-down", "ÄÖÜ/ß", "\tICU", "a\nb"],
)
def test_every_ward_the_patients_api_accepts_has_a_topic(ward: str) -> None:
    topic = ward_topic(ward)
    assert topic is not None and parse_topic(topic) == topic
    assert "," not in topic and topic.isascii() and topic.isprintable()


@pytest.mark.parametrize("ward", ["", "   ", "x" * 65, "\ud800"])
def test_names_no_ward_can_have_get_no_topic(ward: str) -> None:
    assert ward_topic(ward) is None


def test_repeats_collapse_in_order() -> None:
    assert parse_topics(["alerts", "patients", "alerts"]) == ["alerts", "patients"]


@pytest.mark.parametrize(
    ("type", "data", "expected"),
    [
        (
            "PatientCreated",
            {"patient_id": PID, "ward": "ICU"},
            ("patients", "ward:ICU", f"patient:{PID}"),
        ),
        (
            "PatientCritical",
            {"patient_id": PID, "ward": "ICU"},
            ("patients", "ward:ICU", f"patient:{PID}"),
        ),
        ("AlertRaised", {"patient_id": PID, "ward": "B2"}, ("alerts", "ward:B2", f"patient:{PID}")),
        ("AlertUpdated", {}, ("alerts",)),
        ("VitalsUpdated", {"patient_id": PID, "ward": "ICU"}, ("ward:ICU", f"patient:{PID}")),
        ("MetricsUpdated", {"connected_clients": 3}, ("metrics",)),
        ("EventProcessed", {"subject": PID}, ("metrics",)),
        ("PatientCreated", {"patient_id": "not-a-uuid", "ward": ""}, ("patients",)),
        ("VitalsUpdated", {"patient_id": PID, "ward": "A&E"}, ("ward:A%26E", f"patient:{PID}")),
        ("AlertRaised", {"ward": "St Mary's"}, ("alerts", "ward:St Mary%27s")),
        ("Unknown", {"x": 1}, ()),
    ],
)
def test_a_message_belongs_to_its_broad_topic_then_ward_then_patient(
    type: str, data: dict[str, Any], expected: tuple[str, ...]
) -> None:
    assert topics_for(type, data) == expected
