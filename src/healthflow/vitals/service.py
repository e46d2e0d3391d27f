"""Device and intake use cases: register and bind devices, accept telemetry durably."""

from __future__ import annotations

import builtins
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import structlog

from healthflow.ids import uuid7, uuid7_texts
from healthflow.patients.domain import Status
from healthflow.ports import Check, Clock
from healthflow.vitals import keys, metrics
from healthflow.vitals.domain import (
    Device,
    DeviceAuthFailed,
    DeviceNotFound,
    DeviceUnbound,
    PatientNotMonitored,
    QuarantinedReading,
    Reading,
    ReadingProblem,
    ReadingsRefused,
    TelemetryBusy,
    check_device,
    check_reading,
)
from healthflow.vitals.events import RecordedReading, reading_to_dict
from healthflow.vitals.ports import DeviceRegistry, Patients, TelemetryIntake

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RegisteredDevice:
    device: Device
    key: str


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    rejected: list[tuple[int, ReadingProblem]]


async def _nothing_waiting() -> int:
    return 0


class DeviceService:
    """Registration and binding; a device's key is returned once and stored only as a hash."""

    def __init__(
        self,
        registry: DeviceRegistry,
        patients: Patients,
        clock: Clock,
        *,
        wards_remembered: int = 10_000,
    ) -> None:
        self._registry = registry
        self._patients = patients
        self._clock = clock
        # a patient's ward never changes after registration, so once read it is kept (the
        # oldest first out beyond the bound): each message of a monitor would otherwise read it
        self._wards: OrderedDict[UUID, str] = OrderedDict()
        self._wards_remembered = wards_remembered

    async def register(self, device_id: str, *, patient_id: UUID, kind: str) -> RegisteredDevice:
        check_device(device_id, kind)
        await self._monitorable(patient_id)
        key = keys.new_key()
        device = Device(device_id, kind, patient_id, self._clock.now())
        await self._registry.add(device, keys.hash_key(key))
        log.info("device_registered", device_id=device_id, kind=kind)
        return RegisteredDevice(device, key)

    async def bind(self, device_id: str, patient_id: UUID) -> Device:
        await self._monitorable(patient_id)
        return await self._registry.bind(device_id, patient_id)

    async def unbind(self, device_id: str) -> Device:
        return await self._registry.bind(device_id, None)

    async def get(self, device_id: str) -> Device:
        found = await self._registry.get(device_id)
        if found is None:
            raise DeviceNotFound(device_id)
        return found[0]

    async def list(self, *, patient_id: UUID | None, limit: int) -> list[Device]:
        return await self._registry.list(patient_id=patient_id, limit=limit)

    async def ward(self, patient_id: UUID) -> str:
        """The ward a bound patient's readings are filed under (carried in their events)."""
        ward = self._wards.get(patient_id)
        if ward is None:
            ward = self._wards[patient_id] = await self._patients.ward(patient_id)
            if len(self._wards) > self._wards_remembered:
                self._wards.popitem(last=False)
        return ward

    async def _monitorable(self, patient_id: UUID) -> None:
        patient = await self._patients.get(patient_id)  # PatientNotFound for an unknown patient
        if patient.status is Status.DISCHARGED:
            raise PatientNotMonitored(patient_id)

    async def authenticate(self, device_id: str, key: str | None) -> Device:
        """The device whose key this is; raises DeviceAuthFailed for any mismatch."""
        return _authenticated(key, await self._registry.get(device_id))

    async def authenticate_many(
        self, claims: Sequence[tuple[str, str | None]]
    ) -> builtins.list[Device | DeviceAuthFailed]:  # `list` is a method here
        """`authenticate` for each (device id, key), the devices read together; the failures
        returned rather than raised."""
        found = await self._registry.get_many(list(dict.fromkeys(d for d, _ in claims)))
        outcomes: list[Device | DeviceAuthFailed] = []
        for device_id, key in claims:
            try:
                outcomes.append(_authenticated(key, found.get(device_id)))
            except DeviceAuthFailed as exc:
                outcomes.append(exc)
        return outcomes


class TelemetryService:
    """Accepts readings of an authenticated device: durable once it answers, or refused."""

    def __init__(
        self,
        devices: DeviceService,
        intake: TelemetryIntake,
        clock: Clock,
        *,
        backlog_limit: int,
        retry_after_s: int = 5,
        waiting_on_bus: Callable[[], Awaitable[int]] = _nothing_waiting,
    ) -> None:
        self._devices = devices
        self._intake = intake
        self._clock = clock
        self._backlog_limit = backlog_limit
        self._retry_after = retry_after_s
        # readings published but not yet taken by the vitals workers (a broker's queue): with a
        # broker the relay empties the outbox at once, and the backlog builds up there instead
        self._waiting_on_bus = waiting_on_bus

    async def authenticate(self, device_id: str, key: str | None, *, transport: str) -> Device:
        """The device whose key this is; raises DeviceAuthFailed (and counts it) otherwise."""
        try:
            return await self._devices.authenticate(device_id, key)
        except DeviceAuthFailed:
            metrics.REFUSED.labels(transport, "auth_failed").inc()
            raise

    async def authenticate_many(
        self, claims: Sequence[tuple[str, str | None]], *, transport: str
    ) -> list[Device | DeviceAuthFailed]:
        """`authenticate` for each (device id, key), the failures counted and returned."""
        outcomes = await self._devices.authenticate_many(claims)
        if failed := sum(isinstance(o, DeviceAuthFailed) for o in outcomes):
            metrics.REFUSED.labels(transport, "auth_failed").inc(failed)
        return outcomes

    async def admit(self, *, transport: str) -> None:
        """Raise TelemetryBusy (and count it) while the backlog is at its limit.

        The HTTP route asks before it parses a body, so an overloaded intake refuses a batch
        for the price of a lookup instead of the price of parsing it.
        """
        if await self.backlog() >= self._backlog_limit:
            metrics.REFUSED.labels(transport, "busy").inc()
            raise TelemetryBusy(self._retry_after)

    async def backlog(self) -> int:
        """Accepted readings the vitals workers have not taken: in the outbox or on the bus."""
        return await self._intake.backlog() + await self._waiting_on_bus()

    async def ingest(
        self, device: Device, readings: Sequence[Reading], *, transport: str
    ) -> IngestResult:
        """Store accepted and quarantined readings in one transaction; raise when none is usable."""
        [outcome] = await self.ingest_many([(device, readings)], transport=transport)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def ingest_many(
        self, requests: Sequence[tuple[Device, Sequence[Reading]]], *, transport: str
    ) -> list[IngestResult | DeviceUnbound | ReadingsRefused]:
        """`ingest` for several devices' requests at once (what an MQTT subscriber took from the
        broker together): one backlog check, one commit, the requests stored in order. Each
        request's outcome, in order, its refusal returned rather than raised; TelemetryBusy or
        a failed commit is the whole call's."""
        await self.admit(transport=transport)
        now = self._clock.now()
        ids = uuid7_texts(now, sum(len(readings) for _, readings in requests))
        sorted_out: list[_Sorted] = []
        first = 0
        for device, readings in requests:
            ward = await self._devices.ward(device.patient_id) if device.patient_id else None
            own_ids = ids[first : first + len(readings)]
            sorted_out.append(_sort(device, readings, own_ids, now, ward))
            first += len(readings)
        already_stored = await self._intake.accept_many(
            [(s.accepted, s.quarantined) for s in sorted_out]
        )
        outcomes: list[IngestResult | DeviceUnbound | ReadingsRefused] = []
        fresh_total = duplicates_total = quarantined_total = 0
        for s, repeats in zip(sorted_out, already_stored, strict=True):
            fresh = len(s.accepted) - repeats
            duplicates = repeats + s.duplicates_in_request
            fresh_total += fresh
            duplicates_total += duplicates
            quarantined_total += len(s.quarantined)
            for q in s.quarantined:
                metrics.QUARANTINED.labels(q.reason).inc()
            if s.device.patient_id is None:
                outcomes.append(DeviceUnbound(s.device.device_id, len(s.quarantined)))
            elif s.rejected and len(s.rejected) == len(s.readings):
                outcomes.append(ReadingsRefused(s.rejected))
            else:
                outcomes.append(IngestResult(fresh, duplicates, s.rejected))
        metrics.READINGS.labels(transport, "accepted").inc(fresh_total)
        metrics.READINGS.labels(transport, "duplicate").inc(duplicates_total)
        metrics.READINGS.labels(transport, "quarantined").inc(quarantined_total)
        return outcomes

    async def check(self) -> Check:
        """Readiness: the intake's backlog against its limit; down when it cannot be read."""
        try:
            backlog = await self.backlog()
        except Exception as exc:  # any failure means not ready; the detail says which
            return Check(False, {"error": type(exc).__name__})
        return Check(True, {"backlog": backlog, "limit": self._backlog_limit})

    async def quarantined(
        self, *, device_id: str | None, reason: str | None, before: UUID | None, limit: int
    ) -> list[QuarantinedReading]:
        return await self._intake.quarantined(
            device_id=device_id, reason=reason, before=before, limit=limit
        )


def _authenticated(key: str | None, found: tuple[Device, str] | None) -> Device:
    if not keys.verify_key(key or "", found[1] if found else None) or found is None:
        raise DeviceAuthFailed()
    return found[0]


@dataclass
class _Sorted:
    """One request's readings sorted: to store, to quarantine, refused (by index), repeated."""

    device: Device
    readings: Sequence[Reading]
    accepted: list[RecordedReading]
    quarantined: list[QuarantinedReading]
    rejected: list[tuple[int, ReadingProblem]]
    duplicates_in_request: int


def _sort(
    device: Device, readings: Sequence[Reading], ids: Sequence[str], now: datetime, ward: str | None
) -> _Sorted:
    accepted: list[RecordedReading] = []
    quarantined: list[QuarantinedReading] = []
    rejected: list[tuple[int, ReadingProblem]] = []
    seen: set[datetime] = set()
    duplicates_in_request = 0
    for index, reading in enumerate(readings):
        problems = (
            [ReadingProblem("device_id", "device_unbound", "device is bound to no patient")]
            if device.patient_id is None
            else check_reading(reading, now=now)
        )
        if problems:
            rejected.append((index, problems[0]))
            quarantined.append(_quarantined(device, reading, problems, now))
        elif reading.ts in seen:
            duplicates_in_request += 1
        else:
            seen.add(reading.ts)
            patient_id = device.patient_id
            assert patient_id is not None  # unbound devices were handled above
            accepted.append(
                RecordedReading(
                    ids[index], device.device_id, patient_id, reading, now, ward, checked=True
                )
            )
    # a batch sent out of order is queued in time order, so none of it is scored as late
    accepted.sort(key=lambda r: r.reading.ts)
    return _Sorted(device, readings, accepted, quarantined, rejected, duplicates_in_request)


def _quarantined(
    device: Device, reading: Reading, problems: list[ReadingProblem], now: datetime
) -> QuarantinedReading:
    first = problems[0]
    return QuarantinedReading(
        id=uuid7(now),
        device_id=device.device_id,
        patient_id=device.patient_id,
        reason=first.reason,
        field=first.field,
        message="; ".join(f"{p.field}: {p.message}" for p in problems),
        payload=reading_to_dict(reading),
        received_at=now,
    )
