"""The telemetry event: one accepted reading, keyed by patient so each patient's readings stay
in order on the bus, plus the live-push message types this package sends."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from healthflow.messaging.events import CloudEvent
from healthflow.vitals.domain import Consciousness, Reading

SOURCE = "/healthflow/devices"
VITAL_SIGNS_RECORDED = "VitalSignsRecorded"
VITALS_UPDATED = "VitalsUpdated"
ALERT_RAISED = "AlertRaised"
ALERT_UPDATED = "AlertUpdated"


def reading_to_dict(reading: Reading) -> dict[str, Any]:
    """The reading as JSON values: its instant as ISO 8601 text."""
    out = reading_for_orjson(reading)
    out["ts"] = reading.ts.isoformat()
    return out


def reading_for_orjson(reading: Reading) -> dict[str, Any]:
    """`reading_to_dict` with the instant as the datetime itself, for what orjson writes (it
    writes the same text as `isoformat()`, in a fifth of the time): the live pushes."""
    out: dict[str, Any] = {"ts": reading.ts, **reading.measurements()}
    if reading.spo2_scale is not None:
        out["spo2_scale"] = reading.spo2_scale
    return out


def reading_from_dict(raw: dict[str, Any]) -> Reading:
    level = raw.get("consciousness")
    return Reading(
        ts=datetime.fromisoformat(raw["ts"]),
        heart_rate=raw.get("heart_rate"),
        resp_rate=raw.get("resp_rate"),
        spo2=raw.get("spo2"),
        systolic_bp=raw.get("systolic_bp"),
        diastolic_bp=raw.get("diastolic_bp"),
        temperature=raw.get("temperature"),
        consciousness=Consciousness(level) if level is not None else None,
        on_oxygen=raw.get("on_oxygen"),
        spo2_scale=raw.get("spo2_scale"),
    )


@dataclass(frozen=True)
class RecordedReading:
    """A reading as the worker receives it: which device, which patient, when it arrived.

    `ward` is the patient's ward as the intake found it (a ward never changes after
    registration), so the analytics side can file an alert without asking the patients service;
    None for events written before it was carried. `checked` says this process's intake made it
    after `check_reading` passed it at `received_at`: the monitor need not check it again (a
    reading decoded from an event, or handed in over HTTP, is checked there).
    """

    reading_id: str
    device_id: str
    patient_id: UUID
    reading: Reading
    received_at: datetime
    ward: str | None = None
    checked: bool = field(default=False, compare=False, repr=False)


def vital_signs_recorded(recorded: RecordedReading) -> CloudEvent:
    patient_id = str(recorded.patient_id)
    data: dict[str, Any] = {
        "device_id": recorded.device_id,
        "patient_id": patient_id,
        "reading": reading_to_dict(recorded.reading),
    }
    if recorded.ward is not None:
        data["ward"] = recorded.ward
    return CloudEvent(
        id=recorded.reading_id,
        source=f"{SOURCE}/{recorded.device_id}",
        type=VITAL_SIGNS_RECORDED,
        time=recorded.received_at,
        subject=patient_id,
        data=data,
        origin=recorded,
    )


@functools.lru_cache(maxsize=4096)
def _patient_id(text: str) -> UUID:
    # a worker's batch holds many readings of few patients: parse each patient's id once
    return UUID(text)


def recorded_from_event(event: CloudEvent) -> RecordedReading:
    if isinstance(event.origin, RecordedReading):  # made in this process: `data` came from it
        return event.origin
    return RecordedReading(
        reading_id=event.id,
        device_id=str(event.data["device_id"]),
        patient_id=_patient_id(str(event.data["patient_id"])),
        reading=reading_from_dict(event.data["reading"]),
        received_at=event.time,
        ward=str(event.data["ward"]) if event.data.get("ward") is not None else None,
    )
