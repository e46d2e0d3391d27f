"""The bedside monitor: each accepted reading → stored → NEWS2 → alert → live push.

Runs where the vitals series lives (the analytics database): in process for `--role all`,
behind `POST /api/analytics/vitals[/batch]` in the analytics role. The reading, the patient's
NEWS2 state and the alert change commit together, deduplicated by (device, ts); the live pushes
follow the commit. Whether the patient must become critical is part of the answer: the caller
(vitals/escalation.py) makes that move, so it can run in another process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog

from healthflow.ids import uuid7
from healthflow.ports import Clock, Hub
from healthflow.vitals import alerts as alert_rules
from healthflow.vitals import events, metrics
from healthflow.vitals.alerts import (
    Alert,
    AlertChange,
    AlertChanged,
    AlertNotFound,
    AlertStatus,
    Severity,
)
from healthflow.vitals.assessment import Assessment, PatientVitals, assess
from healthflow.vitals.domain import DomainError, ReadingsRefused, check_reading
from healthflow.vitals.events import RecordedReading
from healthflow.vitals.ports import (
    Assessed,
    CriticalCall,
    LatestNews2,
    Outcome,
    PatientDirectory,
    StoredReading,
    VitalsStore,
)

log = structlog.get_logger(__name__)
# An acknowledgement loses a race whenever a reading updates the alert between its read and its
# save; readings arrive every few seconds, so it re-reads and tries again a few times.
ACK_ATTEMPTS = 5


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

    async def assess_many(self, batch: Sequence[RecordedReading]) -> list[Assessed]:
        """The Assessor port: record readings in one transaction and say, per reading, whether
        the patient must now go critical."""
        return [
            Assessed(first, critical_call(outcome))
            for outcome, first in await self.record_many(batch)
        ]

    async def record(self, recorded: RecordedReading) -> tuple[Outcome, bool]:
        """Store, score and alert on one reading; False when it was handled before."""
        (result,) = await self.record_many([recorded])
        return result

    async def record_many(self, batch: Sequence[RecordedReading]) -> list[tuple[Outcome, bool]]:
        """Store, score and alert on readings in order; per reading, False if seen before."""
        for recorded in batch:
            if recorded.checked:  # this process's intake checked it as it arrived
                continue
            problems = check_reading(recorded.reading, now=recorded.received_at)
            if problems:  # the intake refuses these; anything handing in events directly too
                raise ReadingsRefused([(0, p) for p in problems])
        wards = await self._wards(batch)

        def decide(
            recorded: RecordedReading, state: PatientVitals | None, active: Alert | None
        ) -> tuple[PatientVitals, Outcome]:
            new_state, assessment = assess(state, recorded.reading)
            if assessment is None:
                return new_state, Outcome(None, None, None)
            alert, change = alert_rules.on_assessment(
                active,
                assessment,
                patient_id=recorded.patient_id,
                ward=wards[recorded.patient_id],
                new_id=lambda: uuid7(recorded.reading.ts),
            )
            return new_state, Outcome(assessment, alert, change)

        results = await self._store.record_many(batch, decide, wards=wards)
        latest: dict[UUID, tuple[RecordedReading, Outcome]] = {}
        self._count([outcome for outcome, first in results if first])
        for recorded, (outcome, first) in zip(batch, results, strict=True):
            if first:
                await self._push_alert(outcome)
                if outcome.assessment is not None:
                    latest[recorded.patient_id] = (recorded, outcome)
        # a patient's readings of one batch show as its newest: the hub would coalesce the rest
        for recorded, outcome in latest.values():
            await self._push_vitals(recorded, outcome, ward=wards[recorded.patient_id])
        return results

    async def acknowledge(self, alert_id: UUID, *, by: str) -> Alert:
        """Acknowledge the alert as it is now.

        A reading that updated the alert between our read and our save is no conflict for the
        person acknowledging, so the newer version is acknowledged instead; an escalation is
        (it needs a fresh look), so that one is refused as changed meanwhile.
        """
        attempt = 0
        severity: Severity | None = None
        while True:
            attempt += 1
            alert = await self._store.alert(alert_id)
            if alert is None:
                raise AlertNotFound(alert_id)
            if severity is not None and alert.severity is not severity:
                raise AlertChanged(alert_id)
            severity = alert.severity
            acknowledged, change = alert.acknowledge(by=by, at=self._clock.now())
            if change is None:
                return alert
            try:
                await self._store.save_alert(acknowledged, expected_version=alert.version)
            except AlertChanged:
                if attempt == ACK_ATTEMPTS:
                    raise
                metrics.ACK_RETRIES.inc()
                continue
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
        self, patient_id: UUID, *, since: datetime | None, limit: int, every_s: int | None = None
    ) -> list[StoredReading]:
        series = await self._store.series(patient_id, since=since, limit=limit, every_s=every_s)
        if not series:
            # readings exist only of a patient that exists (patients are never deleted): only
            # an empty series asks whether the patient is unknown (PatientNotFound: 404)
            await self._patients.ward(patient_id)
        return series

    async def latest_news2(
        self, *, ward: str | None, after: UUID | None, limit: int
    ) -> list[LatestNews2]:
        """Every monitored patient's current NEWS2 (a ward board's column), by patient id."""
        return await self._store.latest(ward=ward, after=after, limit=limit)

    async def open_alerts_by_severity(self) -> dict[str, int]:
        return await self._store.open_alerts_by_severity()

    async def news2(self, patient_id: UUID) -> Assessment:
        state = await self._store.state(patient_id)
        if state is None or state.assessment is None:
            await self._patients.ward(patient_id)  # an unknown patient: 404, not "no score yet"
            raise NoAssessment(patient_id)
        return state.assessment

    async def _wards(self, batch: Sequence[RecordedReading]) -> dict[UUID, str]:
        """Each patient's ward: the intake puts it in the event; older events ask the directory
        (PatientNotFound for an unknown patient)."""
        wards = {r.patient_id: r.ward for r in batch if r.ward is not None}
        for patient_id in _distinct_patients(batch):
            if patient_id not in wards:
                wards[patient_id] = await self._patients.ward(patient_id)
        return wards

    def _count(self, outcomes: Sequence[Outcome]) -> None:
        # summed per batch first: a labelled counter costs a lock and a lookup per increment
        late = 0
        risks: Counter[str] = Counter()
        changes: Counter[tuple[str, str]] = Counter()
        for outcome in outcomes:
            if outcome.assessment is None:
                late += 1
                continue
            risks[outcome.assessment.risk.value] += 1
            if outcome.alert is not None and outcome.change is not None:
                changes[(outcome.alert.severity.value, outcome.change.value)] += 1
        if late:
            metrics.LATE_READINGS.inc(late)
        for risk, count in risks.items():
            metrics.ASSESSMENTS.labels(risk).inc(count)
        for (severity, change), count in changes.items():
            metrics.ALERT_CHANGES.labels(severity, change).inc(count)

    async def _push_vitals(self, recorded: RecordedReading, outcome: Outcome, *, ward: str) -> None:
        assert outcome.assessment is not None
        await self._broadcast(
            events.VITALS_UPDATED,
            {
                "patient_id": str(recorded.patient_id),
                # on `ward:{ward}` too, so a ward's board keeps its NEWS2 column live
                "ward": ward,
                "device_id": recorded.device_id,
                # both written by the hub's orjson, as their dicts' JSON (a push per patient
                # per batch: the instants' text and the copies cost a third of one)
                "reading": events.reading_for_orjson(recorded.reading),
                "news2": outcome.assessment,
            },
        )

    async def _push_alert(self, outcome: Outcome) -> None:
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


def _distinct_patients(batch: Sequence[RecordedReading]) -> list[UUID]:
    return list(dict.fromkeys(r.patient_id for r in batch))


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
        "version": alert.version,
    }


def _alert_data(alert: Alert, change: AlertChange) -> dict[str, Any]:
    return {**alert_to_dict(alert), "change": change.value}
