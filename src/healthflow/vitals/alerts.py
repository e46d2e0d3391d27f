"""Clinical alerts raised from NEWS2 and their lifecycle: open → acknowledged → resolved.

Pure rules. One active alert per patient at most: while it is active, further readings update
it (and escalate urgent → critical) instead of raising new ones, so a deteriorating patient
gives one alert, not one per reading.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from healthflow.vitals.assessment import Assessment
from healthflow.vitals.domain import DomainError
from healthflow.vitals.news2 import Risk

# Consecutive readings below every alerting level after which an alert resolves itself.
RESOLVE_AFTER = 3
MAX_ACKNOWLEDGER_LENGTH = 100


class Severity(enum.StrEnum):
    URGENT = "urgent"
    CRITICAL = "critical"


class AlertStatus(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertChange(enum.StrEnum):
    RAISED = "raised"
    ESCALATED = "escalated"
    UPDATED = "updated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


_RANK = {Severity.URGENT: 1, Severity.CRITICAL: 2}


class AlertNotFound(DomainError):
    def __init__(self, alert_id: UUID) -> None:
        super().__init__(f"no alert with id {alert_id}")
        self.alert_id = alert_id


class AlertResolved(DomainError):
    def __init__(self, alert_id: UUID) -> None:
        super().__init__(f"alert {alert_id} is resolved and can no longer be acknowledged")
        self.alert_id = alert_id


@dataclass(frozen=True)
class Alert:
    id: UUID
    patient_id: UUID
    ward: str
    severity: Severity
    status: AlertStatus
    score: int
    risk: Risk
    peak_score: int
    readings: int
    calm_readings: int
    opened_at: datetime
    updated_at: datetime
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    version: int = 1

    @property
    def active(self) -> bool:
        return self.status is not AlertStatus.RESOLVED

    def acknowledge(self, *, by: str, at: datetime) -> tuple[Alert, AlertChange | None]:
        """Record who took the alert on; the first acknowledgement stands; resolved refuses."""
        if self.status is AlertStatus.RESOLVED:
            raise AlertResolved(self.id)
        if self.status is AlertStatus.ACKNOWLEDGED:
            return self, None
        changed = dataclasses.replace(
            self,
            status=AlertStatus.ACKNOWLEDGED,
            acknowledged_by=by,
            acknowledged_at=at,
            updated_at=max(self.updated_at, at),
            version=self.version + 1,
        )
        return changed, AlertChange.ACKNOWLEDGED


def severity_for(risk: Risk) -> Severity | None:
    """High risk needs a critical alert, low-medium and medium an urgent one, low none."""
    if risk is Risk.HIGH:
        return Severity.CRITICAL
    if risk in (Risk.MEDIUM, Risk.LOW_MEDIUM):
        return Severity.URGENT
    return None


def on_assessment(
    active: Alert | None,
    assessment: Assessment,
    *,
    patient_id: UUID,
    ward: str,
    new_id: Callable[[], UUID],
) -> tuple[Alert | None, AlertChange | None]:
    """The patient's alert after one more assessment, and what happened to it.

    `new_id` makes the id of a newly raised alert; most assessments raise none, so it is only
    called when one is.
    """
    severity = severity_for(assessment.risk)
    at = assessment.assessed_at
    if active is None or not active.active:
        if severity is None:
            return None, None
        alert = Alert(
            id=new_id(),
            patient_id=patient_id,
            ward=ward,
            severity=severity,
            status=AlertStatus.OPEN,
            score=assessment.total,
            risk=assessment.risk,
            peak_score=assessment.total,
            readings=1,
            calm_readings=0,
            opened_at=at,
            updated_at=at,
        )
        return alert, AlertChange.RAISED
    updated = dataclasses.replace(
        active,
        score=assessment.total,
        risk=assessment.risk,
        peak_score=max(active.peak_score, assessment.total),
        readings=active.readings + 1,
        updated_at=max(active.updated_at, at),
        version=active.version + 1,
    )
    if severity is None:
        calm = active.calm_readings + 1
        if calm >= RESOLVE_AFTER:
            resolved = dataclasses.replace(
                updated, calm_readings=calm, status=AlertStatus.RESOLVED, resolved_at=at
            )
            return resolved, AlertChange.RESOLVED
        return dataclasses.replace(updated, calm_readings=calm), AlertChange.UPDATED
    updated = dataclasses.replace(updated, calm_readings=0)
    if _RANK[severity] > _RANK[active.severity]:
        # an escalation needs a fresh acknowledgement: whoever took the urgent alert may not know
        escalated = dataclasses.replace(
            updated,
            severity=severity,
            status=AlertStatus.OPEN,
            acknowledged_by=None,
            acknowledged_at=None,
        )
        return escalated, AlertChange.ESCALATED
    return updated, AlertChange.UPDATED


class AlertChanged(DomainError):
    """Someone else changed the alert since it was read; try again."""

    def __init__(self, alert_id: UUID) -> None:
        super().__init__(f"alert {alert_id} changed meanwhile; try again")
        self.alert_id = alert_id
