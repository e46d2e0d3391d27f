"""How one patient event changes the analytics read model: pure rules, no I/O.

Events can arrive twice (deduped by the store) or out of order after a retry. Each event carries
a full de-identified snapshot with the patient's version, so a late, older event still counts
in the per-day tallies but never moves a patient's current status backwards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime

from healthflow.messaging.events import CloudEvent
from healthflow.patients.domain import WAITING_STATUSES, Status

PATIENT_CREATED = "PatientCreated"


@dataclass(frozen=True)
class PatientState:
    """Analytics' de-identified view of one patient."""

    patient_id: str
    ward: str
    status: str
    version: int
    registered_at: datetime
    treated_at: datetime | None = None


@dataclass(frozen=True)
class Effect:
    """What to write for one event, in the same transaction as its document."""

    state: PatientState | None = None
    new_patient: bool = False
    status_delta: dict[str, int] = field(default_factory=dict)
    daily: dict[tuple[date, str, str], int] = field(default_factory=dict)
    wait: tuple[date, float] | None = None


def project(event: CloudEvent, current: PatientState | None) -> Effect:
    data = event.data
    day = event.time.date()
    daily: dict[tuple[date, str, str], int] = {(day, "events", event.type): 1}
    registered_at = datetime.fromisoformat(data["registered_at"])
    if event.type == PATIENT_CREATED:
        daily[(registered_at.date(), "registrations", "")] = 1

    incoming = PatientState(
        patient_id=data["patient_id"],
        ward=data["ward"],
        status=data["status"],
        version=int(data["version"]),
        registered_at=registered_at,
        treated_at=current.treated_at if current else None,
    )
    wait = None
    starts_treatment = (
        data["status"] == Status.IN_TREATMENT
        and data.get("previous_status") in WAITING_STATUSES
        and incoming.treated_at is None
    )
    if starts_treatment:
        wait = (day, max((event.time - registered_at).total_seconds() / 60, 0.0))
        incoming = dataclasses.replace(incoming, treated_at=event.time)

    if current is None:
        return Effect(incoming, True, {incoming.status: 1}, daily, wait)
    if incoming.version <= current.version:
        kept = dataclasses.replace(current, treated_at=incoming.treated_at)
        return Effect(kept if kept != current else None, False, {}, daily, wait)
    delta: dict[str, int] = {}
    if incoming.status != current.status:
        delta = {current.status: -1, incoming.status: 1}
    return Effect(incoming, False, delta, daily, wait)
