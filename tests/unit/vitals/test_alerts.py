"""Alert rules: one alert per episode, escalation, acknowledgement, self-resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from healthflow.vitals.alerts import (
    RESOLVE_AFTER,
    Alert,
    AlertChange,
    AlertResolved,
    AlertStatus,
    Severity,
    on_assessment,
    severity_for,
)
from healthflow.vitals.assessment import Assessment
from healthflow.vitals.news2 import Risk

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
PATIENT = uuid4()
TOTALS = {Risk.LOW: 1, Risk.LOW_MEDIUM: 3, Risk.MEDIUM: 5, Risk.HIGH: 9}


def reading(risk: Risk, minute: int = 0) -> Assessment:
    return Assessment(
        total=TOTALS[risk],
        risk=risk,
        sub_scores={},
        carried_forward=(),
        missing=(),
        assessed_at=T0 + timedelta(minutes=minute),
        spo2_scale=1,
    )


def step(
    active: Alert | None, risk: Risk, minute: int = 0
) -> tuple[Alert | None, AlertChange | None]:
    return on_assessment(
        active, reading(risk, minute), patient_id=PATIENT, ward="ICU", new_id=uuid4
    )


@pytest.mark.parametrize(
    ("risk", "severity"),
    [
        (Risk.LOW, None),
        (Risk.LOW_MEDIUM, Severity.URGENT),
        (Risk.MEDIUM, Severity.URGENT),
        (Risk.HIGH, Severity.CRITICAL),
    ],
)
def test_severity_follows_risk(risk: Risk, severity: Severity | None) -> None:
    assert severity_for(risk) is severity


def test_low_risk_raises_nothing() -> None:
    assert step(None, Risk.LOW) == (None, None)


@pytest.mark.parametrize(
    ("risk", "severity"),
    [
        (Risk.LOW_MEDIUM, Severity.URGENT),
        (Risk.MEDIUM, Severity.URGENT),
        (Risk.HIGH, Severity.CRITICAL),
    ],
)
def test_alerting_risk_raises_an_open_alert(risk: Risk, severity: Severity) -> None:
    alert, change = step(None, risk)
    assert change is AlertChange.RAISED
    assert alert is not None
    assert (alert.severity, alert.status, alert.ward, alert.readings) == (
        severity,
        AlertStatus.OPEN,
        "ICU",
        1,
    )


def test_further_bad_readings_update_the_same_alert() -> None:
    alert, _ = step(None, Risk.HIGH)
    assert alert is not None
    again, change = step(alert, Risk.HIGH, 1)
    assert change is AlertChange.UPDATED
    assert again is not None
    assert (again.id, again.readings, again.version) == (alert.id, 2, alert.version + 1)


def test_urgent_escalates_to_critical_and_needs_a_new_acknowledgement() -> None:
    alert, _ = step(None, Risk.MEDIUM)
    assert alert is not None
    acked, _ = alert.acknowledge(by="nurse.kim", at=T0)
    escalated, change = step(acked, Risk.HIGH, 1)
    assert change is AlertChange.ESCALATED
    assert escalated is not None
    assert escalated.id == alert.id
    assert (escalated.severity, escalated.status) == (Severity.CRITICAL, AlertStatus.OPEN)
    assert escalated.acknowledged_by is None


def test_critical_is_never_quietly_downgraded() -> None:
    alert, _ = step(None, Risk.HIGH)
    lower, change = step(alert, Risk.MEDIUM, 1)
    assert change is AlertChange.UPDATED
    assert lower is not None
    assert (lower.severity, lower.peak_score, lower.score) == (Severity.CRITICAL, 9, 5)


def test_alert_resolves_after_three_consecutive_calm_readings() -> None:
    alert, _ = step(None, Risk.HIGH)
    changes = []
    for minute in range(1, RESOLVE_AFTER + 1):
        alert, change = step(alert, Risk.LOW, minute)
        changes.append(change)
    assert changes == [AlertChange.UPDATED, AlertChange.UPDATED, AlertChange.RESOLVED]
    assert alert is not None
    assert alert.status is AlertStatus.RESOLVED
    assert alert.resolved_at == T0 + timedelta(minutes=RESOLVE_AFTER)


def test_a_bad_reading_restarts_the_calm_count() -> None:
    alert, _ = step(None, Risk.MEDIUM)
    alert, _ = step(alert, Risk.LOW, 1)
    alert, _ = step(alert, Risk.LOW, 2)
    alert, _ = step(alert, Risk.MEDIUM, 3)
    alert, change = step(alert, Risk.LOW, 4)
    assert change is AlertChange.UPDATED
    assert alert is not None
    assert (alert.status, alert.calm_readings) == (AlertStatus.OPEN, 1)


def test_after_resolution_a_new_episode_raises_a_new_alert() -> None:
    alert, _ = step(None, Risk.MEDIUM)
    for minute in range(1, RESOLVE_AFTER + 1):
        alert, _ = step(alert, Risk.LOW, minute)
    fresh, change = step(alert, Risk.MEDIUM, 10)
    assert change is AlertChange.RAISED
    assert fresh is not None
    assert alert is not None
    assert fresh.id != alert.id


def test_acknowledge_records_who_and_when() -> None:
    alert, _ = step(None, Risk.HIGH)
    assert alert is not None
    acked, change = alert.acknowledge(by="dr.osei", at=T0 + timedelta(minutes=2))
    assert change is AlertChange.ACKNOWLEDGED
    assert (acked.status, acked.acknowledged_by, acked.acknowledged_at) == (
        AlertStatus.ACKNOWLEDGED,
        "dr.osei",
        T0 + timedelta(minutes=2),
    )


def test_the_first_acknowledgement_stands() -> None:
    alert, _ = step(None, Risk.HIGH)
    assert alert is not None
    acked, _ = alert.acknowledge(by="dr.osei", at=T0)
    again, change = acked.acknowledge(by="someone.else", at=T0 + timedelta(minutes=1))
    assert change is None
    assert again == acked


def test_a_resolved_alert_cannot_be_acknowledged() -> None:
    alert, _ = step(None, Risk.MEDIUM)
    for minute in range(1, RESOLVE_AFTER + 1):
        alert, _ = step(alert, Risk.LOW, minute)
    assert alert is not None
    with pytest.raises(AlertResolved):
        alert.acknowledge(by="dr.osei", at=T0)


def test_an_acknowledged_alert_still_absorbs_readings() -> None:
    alert, _ = step(None, Risk.HIGH)
    assert alert is not None
    acked, _ = alert.acknowledge(by="dr.osei", at=T0)
    updated, change = step(acked, Risk.HIGH, 1)
    assert change is AlertChange.UPDATED
    assert updated is not None
    assert (updated.id, updated.status) == (alert.id, AlertStatus.ACKNOWLEDGED)
