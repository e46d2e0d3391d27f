"""Live-push topics: which a client may name, and which a message belongs to (docs/realtime.md)."""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_to_bytes
from uuid import UUID

PATIENTS = "patients"
ALERTS = "alerts"
METRICS = "metrics"
WARD_PREFIX = "ward:"
PATIENT_PREFIX = "patient:"
FIXED = frozenset({PATIENTS, ALERTS, METRICS})
MAX_TOPICS = 256
MAX_WARD_NAME = 64  # characters of the name itself; the patients API takes up to 50
# Ward topics name any ward the patients API accepts: characters outside this set are written
# as %XX (the UTF-8 bytes, upper-case hex), so a topic stays printable ASCII without commas
# (SSE lists topics comma-separated) and each ward has exactly one topic name.
_PLAIN = frozenset(string.ascii_letters + string.digits + " _.-")
_ENCODED = re.compile(r"%([0-9A-Fa-f]{2})")

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
    if raw.startswith(WARD_PREFIX):
        name = ward_name(raw)
        topic = ward_topic(name) if name is not None else None
        if topic is None:
            raise TopicInvalid(raw)
        return topic
    if raw.startswith(PATIENT_PREFIX):
        try:
            return PATIENT_PREFIX + str(UUID(raw[len(PATIENT_PREFIX) :]))
        except ValueError:
            raise TopicInvalid(raw) from None
    raise TopicInvalid(raw)


@functools.lru_cache(maxsize=4096)  # on every message's path; a hospital has a few dozen wards
def ward_topic(ward: str) -> str | None:
    """The one topic of a ward (`ward:ICU`, `ward:A%26E`); None for a name no ward can have
    (blank, longer than MAX_WARD_NAME, or not encodable as UTF-8)."""
    if not ward.strip() or len(ward) > MAX_WARD_NAME:
        return None
    try:
        raw = ward.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not text any ward can be named with
        return None
    return WARD_PREFIX + "".join(chr(b) if chr(b) in _PLAIN else f"%{b:02X}" for b in raw)


def ward_name(topic: str) -> str | None:
    """The ward a `ward:` topic names (%XX decoded), or None when it is not correctly written."""
    body = topic.removeprefix(WARD_PREFIX)
    if any(c not in _PLAIN and c != "%" for c in body) or "%" in _ENCODED.sub("", body):
        return None  # a character that must be encoded, or a % not followed by two hex digits
    try:
        return unquote_to_bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        return None


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
    ward_named = ward_topic(ward) if isinstance(ward, str) else None
    if ward_named is not None:
        topics.append(ward_named)
    patient_id = data.get("patient_id")
    if patient_id is not None and (patient := _patient_topic(str(patient_id))) is not None:
        topics.append(patient)
    return tuple(topics)


@functools.lru_cache(maxsize=4096)
def _patient_topic(patient_id: str) -> str | None:
    # a patient's messages come in runs (every batch of readings pushes each patient's newest):
    # parse and write back each id's canonical form once
    try:
        return PATIENT_PREFIX + str(UUID(patient_id))
    except ValueError:
        return None
