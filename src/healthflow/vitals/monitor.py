"""The bedside monitor: each accepted reading → stored → NEWS2 → alert → live push.

Runs where the vitals series lives (the analytics database): in process for `--role all`, behind
`POST /api/analytics/vitals` in the analytics role. The reading, the patient's NEWS2 state and
the alert change commit together, deduplicated by (device, ts); the live pushes follow the
commit. Whether the patient must become critical is part of the answer: the caller
(vitals/escalation.py) makes that move, so it can run in another process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import structlog

from healthflow.ids import uuid7
from healthflow.ports import Clock, Hub
from healthflow.vitals import alerts as alert_rules
from healthflow.vitals import events, metrics
from healthflow.vitals.alerts import Alert, AlertChange, AlertNotFound, AlertStatus, Severity
from healthflow.vitals.assessment import Assessment, PatientVitals, assess
from healthflow.vitals.domain import DomainError, ReadingsRefused, check_reading
from healthflow.vitals.events import RecordedReading
from healthflow.vitals.ports import (
    Assessed,
    CriticalCall,
    Outcome,
    PatientDirectory,
    StoredReading,
    VitalsStore,
)

log = structlog.get_logger(__name__)


class NoAssessment(DomainError):
    def __init__(self, patient_id: UUID) -> None:
        super().__init__(f"patient {patient_id} has no NEWS2 assessment yet")
        self.patient_id = patient_id


class VitalsMonitor:
    def __init__(
        self, store: VitalsStore, patients: PatientDirectory, hub: Hub, clock: Clock
    ) -> None:
        self._store = store
        self._patients = patients
        self._hub = hub
        self._clock = clock

    async def assess(self, recorded: RecordedReading) -> Assessed:
        """The Assessor port: record one reading and say whether the patient must go critical."""
        outcome, first = await self.record(recorded)
        return Assessed(first, critical_call(outcome))

    async def record(self, recorded: RecordedReading) -> tuple[Outcome, bool]:
        """Store, score and alert on one reading; False when it was handled before."""
        problems = check_reading(recorded.reading, now=recorded.received_at)
        if problems:  # the intake refuses these; anything handing in events directly is held too
            raise ReadingsRefused([(0, p) for p in problems])
        # the intake puts the ward in the event; older events ask (PatientNotFound if unknown)
        ward = recorded.ward or await self._patients.ward(recorded.patient_id)
        new_alert_id = uuid7(recorded.reading.ts)

        def decide(
            state: PatientVitals | None, active: Alert | None
        ) -> tuple[PatientVitals, Outcome]:
            new_state, assessment = assess(state, recorded.reading)
            if assessment is None:
                return new_state, Outcome(None, None, None)
            alert, change = alert_rules.on_assessment(
                active,
                assessment,
                patient_id=recorded.patient_id,
                ward=ward,
                new_id=new_alert_id,
            )
            return new_state, Outcome(assessment, alert, change)

        outcome, first = await self._store.record(recorded, decide)
        if first:
            self._count(outcome)
            await self._push(recorded, outcome)
        return outcome, first

    async def acknowledge(self, alert_id: UUID, *, by: str) -> Alert:
        alert = await self._store.alert(alert_id)
        if alert is None:
            raise AlertNotFound(alert_id)
        acknowledged, change = alert.acknowledge(by=by, at=self._clock.now())
        if change is None:
            return alert
        await self._store.save_alert(acknowledged, expected_version=alert.version)
        metrics.ALERT_CHANGES.labels(acknowledged.severity.value, change.value).inc()
        await self._broadcast(events.ALERT_UPDATED, _alert_data(acknowledged, change))
        return acknowledged

    async def alerts(
        self,
        *,
        status: AlertStatus | None,
        severity: Severity | None,
        ward: str | None,
        patient_id: UUID | None,
        limit: int,
    ) -> list[Alert]:
        return await self._store.alerts(
            status=status, severity=severity, ward=ward, patient_id=patient_id, limit=limit
        )

    async def vitals(
        self, patient_id: UUID, *, since: datetime | None, limit: int
    ) -> list[StoredReading]:
        await self._patients.ward(patient_id)  # PatientNotFound: 404, not an empty list
        return await self._store.series(patient_id, since=since, limit=limit)

    async def news2(self, patient_id: UUID) -> Assessment:
        await self._patients.ward(patient_id)
        state = await self._store.state(patient_id)
        if state is None or state.assessment is None:
            raise NoAssessment(patient_id)
        return state.assessment

    def _count(self, outcome: Outcome) -> None:
        if outcome.assessment is None:
            metrics.LATE_READINGS.inc()
            return
        metrics.ASSESSMENTS.labels(outcome.assessment.risk.value).inc()
        if outcome.alert is not None and outcome.change is not None:
            metrics.ALERT_CHANGES.labels(outcome.alert.severity.value, outcome.change.value).inc()

    async def _push(self, recorded: RecordedReading, outcome: Outcome) -> None:
        if outcome.assessment is None:
            return
        await self._broadcast(
            events.VITALS_UPDATED,
            {
                "patient_id": str(recorded.patient_id),
                "device_id": recorded.device_id,
                "reading": events.reading_to_dict(recorded.reading),
                "news2": outcome.assessment.to_dict(),
            },
        )
        if outcome.alert is None or outcome.change is None:
            return
        if outcome.change is AlertChange.RAISED:
            await self._broadcast(events.ALERT_RAISED, _alert_data(outcome.alert, outcome.change))
        elif outcome.change is not AlertChange.UPDATED:
            await self._broadcast(events.ALERT_UPDATED, _alert_data(outcome.alert, outcome.change))

    async def _broadcast(self, kind: str, data: dict[str, Any]) -> None:
        # Live push is best effort after commit: the stored state is the truth a client reloads.
        try:
            await self._hub.broadcast(kind, data, self._clock.now())
        except Exception:
            log.exception("hub_broadcast_failed", event_type=kind)


def critical_call(outcome: Outcome) -> CriticalCall | None:
    """The move to critical a reading's outcome asks for: its alert was raised as, or escalated
    to, critical. A redelivered reading asks again (its first handling may have died before the
    move); the move is keyed by the alert id, so it happens once per alert."""
    alert, assessment = outcome.alert, outcome.assessment
    if (
        alert is None
        or assessment is None
        or alert.severity is not Severity.CRITICAL
        or outcome.change not in (AlertChange.RAISED, AlertChange.ESCALATED)
    ):
        return None
    return CriticalCall(alert.id, f"NEWS2 {assessment.total} ({assessment.risk.value} risk)")


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    return {
        "id": str(alert.id),
        "patient_id": str(alert.patient_id),
        "ward": alert.ward,
        "severity": alert.severity.value,
        "status": alert.status.value,
        "score": alert.score,
        "risk": alert.risk.value,
        "peak_score": alert.peak_score,
        "readings": alert.readings,
        "opened_at": alert.opened_at.isoformat(),
        "updated_at": alert.updated_at.isoformat(),
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


def _alert_data(alert: Alert, change: AlertChange) -> dict[str, Any]:
    return {**alert_to_dict(alert), "change": change.value}
