"""The telemetry package's seams: Protocols its services use, adapters in store.py implement.

They sit here rather than in healthflow/ports.py because only this package uses them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from healthflow.patients.domain import Patient
from healthflow.ports import Check
from healthflow.vitals.alerts import Alert, AlertChange, AlertStatus, Severity
from healthflow.vitals.assessment import Assessment, PatientVitals
from healthflow.vitals.domain import Device, QuarantinedReading
from healthflow.vitals.events import RecordedReading


@dataclass(frozen=True)
class Outcome:
    """What one reading did: its assessment (None when late) and the alert it touched."""

    assessment: Assessment | None
    alert: Alert | None
    change: AlertChange | None


@dataclass(frozen=True)
class StoredReading:
    reading_id: str
    device_id: str
    patient_id: UUID
    ts: datetime
    values: dict[str, float | str | bool]
    assessment: Assessment | None


@dataclass(frozen=True)
class LatestNews2:
    """A patient's current NEWS2, with the ward the patient was on at that reading."""

    patient_id: UUID
    ward: str | None
    assessment: Assessment


# what one reading makes of the patient's NEWS2 state and open alert: the new state, the outcome
Decide = Callable[
    [RecordedReading, PatientVitals | None, Alert | None], tuple[PatientVitals, Outcome]
]


class DeviceRegistry(Protocol):
    async def add(self, device: Device, key_hash: str) -> None:
        """Insert a device; raises DeviceTaken when the id is in use."""
        ...

    async def get(self, device_id: str) -> tuple[Device, str] | None:
        """The device and its stored key hash."""
        ...

    async def get_many(self, device_ids: Sequence[str]) -> dict[str, tuple[Device, str]]:
        """`get` for several devices in one read; the unknown ones are left out."""
        ...

    async def bind(self, device_id: str, patient_id: UUID | None) -> Device:
        """Bind to a patient (None unbinds); raises DeviceNotFound."""
        ...

    async def list(self, *, patient_id: UUID | None, limit: int) -> list[Device]: ...


class TelemetryIntake(Protocol):
    """The durable intake: accepted readings (an outbox) and quarantined ones, one transaction."""

    async def accept(
        self, accepted: Sequence[RecordedReading], quarantined: Sequence[QuarantinedReading]
    ) -> int:
        """Store both lists together; returns how many accepted ones were duplicates."""
        ...

    async def accept_many(
        self, requests: Sequence[tuple[Sequence[RecordedReading], Sequence[QuarantinedReading]]]
    ) -> list[int]:
        """`accept` for several requests, stored together in order; each one's duplicates. Any
        error is the whole call's: the requests are then all to be sent again."""
        ...

    async def backlog(self) -> int:
        """Accepted readings not yet confirmed by the bus, counted up to the backlog limit (an
        adapter may count at intervals and add what it accepted since)."""
        ...

    async def quarantined(
        self, *, device_id: str | None, reason: str | None, before: UUID | None, limit: int
    ) -> list[QuarantinedReading]:
        """Newest first, strictly before the `before` id."""
        ...


class VitalsStore(Protocol):
    """The vitals time series, each patient's NEWS2 state and the alerts (analytics database)."""

    async def record_many(
        self, batch: Sequence[RecordedReading], decide: Decide, *, wards: Mapping[UUID, str]
    ) -> list[tuple[Outcome, bool]]:
        """Store the readings, in order, and what `decide` makes of each, in one transaction.

        Returns per reading its outcome and whether this was the first time; a repeat (same
        device and ts) returns the outcome stored the first time and changes nothing. `wards`
        are the patients' wards now, kept with each patient's state for `latest(ward=...)`.
        """
        ...

    async def series(
        self, patient_id: UUID, *, since: datetime | None, limit: int, every_s: int | None = None
    ) -> list[StoredReading]:
        """Oldest first. With `since`: the first `limit` readings from then on; without: the
        newest `limit`. With `every_s`: only the newest reading of each `every_s`-second slice
        of time (slices aligned to the Unix epoch), for charts over long periods."""
        ...

    async def state(self, patient_id: UUID) -> PatientVitals | None: ...

    async def latest(
        self, *, ward: str | None, after: UUID | None, limit: int
    ) -> list[LatestNews2]:
        """Every patient's current NEWS2, by patient id, strictly after `after`."""
        ...

    async def open_alerts_by_severity(self) -> dict[str, int]:
        """How many alerts wait for acknowledgement (status open), by severity."""
        ...

    async def alert(self, alert_id: UUID) -> Alert | None: ...

    async def alerts(
        self,
        *,
        status: AlertStatus | None,
        severity: Severity | None,
        ward: str | None,
        patient_id: UUID | None,
        limit: int,
    ) -> list[Alert]:
        """Newest first."""
        ...

    async def save_alert(self, alert: Alert, *, expected_version: int) -> None:
        """Replace an alert if still at expected_version; raises AlertChanged otherwise."""
        ...

    async def check(self) -> Check: ...


class PatientDirectory(Protocol):
    """Where a patient is: PatientService, or the analytics projection in the analytics role."""

    async def ward(self, patient_id: UUID) -> str:
        """The patient's ward (it never changes after registration); raises PatientNotFound."""
        ...


class Patients(PatientDirectory, Protocol):
    """The part of the patient service device registration and intake need."""

    async def get(self, patient_id: UUID) -> Patient: ...


class CriticalRefused(Exception):
    """The patients service refused a move into critical for good (unknown patient, or a
    status with no way into critical): the HTTP form of TransitionRefused / PatientNotFound."""


class MessageRefused(Exception):
    """The intake refused a device message for good; `reason` is the metrics label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class CriticalStatus(Protocol):
    """Moves a patient into critical: PatientService, or the patients service over HTTP."""

    async def mark_critical(
        self, patient_id: UUID, *, reason: str, source: str, alert_id: UUID | None = None
    ) -> object:
        """Idempotent: at most one move per alert id. Raises TransitionRefused or
        PatientNotFound in process, CriticalRefused over HTTP, when the move cannot happen."""
        ...


@dataclass(frozen=True)
class CriticalCall:
    """A reading raised or escalated an alert to critical: the patient must become critical."""

    alert_id: UUID
    reason: str


@dataclass(frozen=True)
class Assessed:
    """What the analytics side made of one reading, as the worker needs it."""

    first: bool  # False: handled before (a redelivery); nothing was changed this time
    critical: CriticalCall | None


@dataclass(frozen=True)
class DeviceMessage:
    """One device message as the MQTT subscriber took it: the device its topic names, the key
    it carried, the rest of its JSON body."""

    device_id: str
    key: str | None
    body: dict[str, Any]


class DeviceMessages(Protocol):
    """Where the MQTT subscriber hands what it took from the broker together: the intake in
    process, or the patients service's HTTP intake from a worker process."""

    async def submit_many(self, messages: Sequence[DeviceMessage]) -> list[Exception | None]:
        """Store the messages' readings durably, in order; for each message None (stored) or
        why it was refused for good: DeviceAuthFailed, RequestValidationError, DeviceUnbound,
        ReadingsRefused, MessageRefused. Raises TelemetryBusy (send them all again after its
        pause) or any other error (send them all again: a reading stored twice is one)."""
        ...


class Assessor(Protocol):
    """Stores, scores and alerts on readings, in order: the VitalsMonitor in process (one
    transaction per batch), or `POST /api/analytics/vitals/batch` from a worker process (one
    call, and transaction, per batch)."""

    async def assess_many(self, batch: Sequence[RecordedReading]) -> list[Assessed]: ...
