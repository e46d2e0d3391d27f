"""The patient service's events: de-identified snapshots, never names, MRN or birth date."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from healthflow.ids import uuid7
from healthflow.messaging.events import CloudEvent
from healthflow.patients.domain import Patient, Status, StatusChange

SOURCE = "/healthflow/patients"
PATIENT_CREATED = "PatientCreated"
PATIENT_STATUS_UPDATED = "PatientStatusUpdated"
PATIENT_CRITICAL = "PatientCritical"
TYPES = (PATIENT_CREATED, PATIENT_STATUS_UPDATED, PATIENT_CRITICAL)
TOPIC = "patients"


def _snapshot(patient: Patient) -> dict[str, Any]:
    return {
        "patient_id": str(patient.id),
        "ward": patient.ward,
        "bed": patient.bed,
        "sex": patient.sex.value,
        "age_band": patient.age_band(patient.updated_at.date()),
        "status": patient.status.value,
        "version": patient.version,
        "registered_at": patient.created_at.isoformat(),
    }


def created(patient: Patient) -> CloudEvent:
    return CloudEvent(
        id=str(uuid7(patient.created_at)),
        source=SOURCE,
        type=PATIENT_CREATED,
        time=patient.created_at,
        subject=str(patient.id),
        data=_snapshot(patient),
    )


def status_changed(
    patient: Patient, change: StatusChange, *, alert_id: UUID | None = None
) -> CloudEvent:
    """One event per move: PatientCritical for a move into critical, else PatientStatusUpdated.

    `alert_id` names the clinical alert that caused a move into critical (vitals/escalation.py).
    """
    kind = PATIENT_CRITICAL if change.status is Status.CRITICAL else PATIENT_STATUS_UPDATED
    data: dict[str, Any] = {
        **_snapshot(patient),
        "previous_status": change.previous.value,
        "reason": change.reason,
        "source": change.source,
    }
    if alert_id is not None:
        data["alert_id"] = str(alert_id)
    return CloudEvent(
        id=str(uuid7(change.at)),
        source=SOURCE,
        type=kind,
        time=change.at,
        subject=str(patient.id),
        data=data,
    )
