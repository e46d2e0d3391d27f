"""Live-push topics: which a client may name, and which a message belongs to (docs/realtime.md)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

PATIENTS = "patients"
ALERTS = "alerts"
METRICS = "metrics"
WARD_PREFIX = "ward:"
PATIENT_PREFIX = "patient:"
FIXED = frozenset({PATIENTS, ALERTS, METRICS})
MAX_TOPICS = 256
_WARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")

# Message types and the broad topic each belongs to; ward/patient topics come from the data.
PATIENT_TYPES = frozenset({"PatientCreated", "PatientStatusUpdated", "PatientCritical"})
ALERT_TYPES = frozenset({"AlertRaised", "AlertUpdated"})
METRIC_TYPES = frozenset({"MetricsUpdated", "EventProcessed"})
VITALS_UPDATED = "VitalsUpdated"


class TopicInvalid(ValueError):
    """A topic name a client sent that is not one of the documented forms."""

    def __init__(self, topic: object) -> None:
        super().__init__(f"unknown topic {topic!r}")
        self.topic = topic


def parse_topic(raw: object) -> str:
    """The canonical form of a client-named topic, or TopicInvalid."""
    if not isinstance(raw, str):
        raise TopicInvalid(raw)
    if raw in FIXED:
        return raw
    if raw.startswith(WARD_PREFIX) and _WARD_NAME.match(raw[len(WARD_PREFIX) :]):
        return raw
    if raw.startswith(PATIENT_PREFIX):
        try:
            return PATIENT_PREFIX + str(UUID(raw[len(PATIENT_PREFIX) :]))
        except ValueError:
            raise TopicInvalid(raw) from None
    raise TopicInvalid(raw)


def parse_topics(raw: Iterable[object]) -> list[str]:
    """Canonical topics in the order given, without repeats; TopicInvalid on the first bad one."""
    seen: dict[str, None] = {}
    for item in raw:
        seen[parse_topic(item)] = None
    return list(seen)


def topics_for(type: str, data: Mapping[str, Any]) -> tuple[str, ...]:
    """The topics a message belongs to, broadest first; empty means nobody can subscribe to it.

    Patient changes go to `patients`, alerts to `alerts`, metrics and processing ticks to
    `metrics`; any message whose data names a ward or a patient also goes to `ward:{name}` and
    `patient:{id}`. Vitals are per-patient detail, so they are not on the broad `patients` topic.
    """
    topics: list[str] = []
    if type in PATIENT_TYPES:
        topics.append(PATIENTS)
    elif type in ALERT_TYPES:
        topics.append(ALERTS)
    elif type in METRIC_TYPES:
        topics.append(METRICS)
    ward = data.get("ward")
    if isinstance(ward, str) and _WARD_NAME.match(ward):
        topics.append(WARD_PREFIX + ward)
    patient_id = data.get("patient_id")
    if patient_id is not None:
        with contextlib.suppress(ValueError):
            topics.append(PATIENT_PREFIX + str(UUID(str(patient_id))))
    return tuple(topics)
