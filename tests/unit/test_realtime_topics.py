"""Topic names clients may use, and the topics each message belongs to."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from healthflow.realtime.topics import TopicInvalid, parse_topic, parse_topics, topics_for

PID = str(uuid.uuid4())
P = f"patient:{PID}"
ICU = {"patient_id": PID, "ward": "ICU"}


@pytest.mark.parametrize(
    "topic",
    ["patients", "alerts", "metrics", "ward:ICU", "ward:B 2", "ward:a.b-c_d", f"patient:{PID}"],
)
def test_documented_topics_are_accepted(topic: str) -> None:
    assert parse_topic(topic) == topic


def test_patient_topics_are_canonicalised() -> None:
    assert parse_topic(f"patient:{PID.upper()}") == f"patient:{PID}"


@pytest.mark.parametrize(
    "topic",
    ["", "Patients", "weather", "ward:", "ward: ICU", "ward:" + "x" * 65, "patient:42", 7, None],
)
def test_anything_else_is_refused(topic: Any) -> None:
    with pytest.raises(TopicInvalid):
        parse_topic(topic)


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
        ("Unknown", {"x": 1}, ()),
    ],
)
def test_a_message_belongs_to_its_broad_topic_then_ward_then_patient(
    type: str, data: dict[str, Any], expected: tuple[str, ...]
) -> None:
    assert topics_for(type, data) == expected
