"""Telemetry routes for people and dashboards: devices, quarantine, vitals, NEWS2, alerts."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime

from healthflow.http import problem
from healthflow.patients.domain import MAX_WARD_LENGTH
from healthflow.vitals.alerts import (
    AlertChanged,
    AlertNotFound,
    AlertResolved,
    AlertStatus,
    Severity,
)
from healthflow.vitals.domain import (
    DEVICE_ID_PATTERN,
    DeviceAuthFailed,
    DeviceInvalid,
    DeviceNotFound,
    DeviceTaken,
    DeviceUnbound,
    DomainError,
    PatientNotMonitored,
    ReadingsRefused,
    TelemetryBusy,
)
from healthflow.vitals.monitor import NoAssessment, VitalsMonitor, critical_call
from healthflow.vitals.ports import Outcome
from healthflow.vitals.schemas import (
    AckIn,
    AlertList,
    AlertOut,
    BindingIn,
    CriticalCallOut,
    DeviceIn,
    DeviceList,
    DeviceOut,
    News2Out,
    News2Page,
    PatientNews2Out,
    QuarantineOut,
    QuarantinePage,
    RegisteredOut,
    VitalsBatchRecordedOut,
    VitalSignsBatchIn,
    VitalSignsEventIn,
    VitalsList,
    VitalsOut,
    VitalsRecordedOut,
)
from healthflow.vitals.service import DeviceService, TelemetryService

# devices and the quarantine live with the intake (patients database); the series, NEWS2 and
# alerts with the monitor (analytics database): two routers, so each role serves its own part
devices_router = APIRouter(tags=["telemetry"])
monitor_router = APIRouter(tags=["telemetry"])
DeviceId = Annotated[str, Query(pattern=DEVICE_ID_PATTERN)]


async def _devices(request: Request) -> DeviceService:
    service: DeviceService = request.app.state.devices
    return service


async def _telemetry(request: Request) -> TelemetryService:
    service: TelemetryService = request.app.state.telemetry
    return service


async def _monitor(request: Request) -> VitalsMonitor:
    service: VitalsMonitor = request.app.state.vitals_monitor
    return service


Devices = Annotated[DeviceService, Depends(_devices)]
Telemetry = Annotated[TelemetryService, Depends(_telemetry)]
Monitor = Annotated[VitalsMonitor, Depends(_monitor)]


@devices_router.post("/api/devices", status_code=201, response_model=RegisteredOut)
async def register_device(body: DeviceIn, devices: Devices, response: Response) -> RegisteredOut:
    registered = await devices.register(body.device_id, patient_id=body.patient_id, kind=body.kind)
    response.headers["Location"] = f"/api/devices/{body.device_id}"
    response.headers["Cache-Control"] = "no-store"  # the key is in this body, and only here
    return RegisteredOut(
        device_id=body.device_id, patient_id=body.patient_id, kind=body.kind, key=registered.key
    )


@devices_router.get("/api/devices", response_model=DeviceList)
async def list_devices(
    devices: Devices,
    patient_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeviceList:
    found = await devices.list(patient_id=patient_id, limit=limit)
    return DeviceList(items=[DeviceOut.of(d) for d in found])


@devices_router.get("/api/devices/{device_id}", response_model=DeviceOut)
async def get_device(device_id: str, devices: Devices) -> DeviceOut:
    return DeviceOut.of(await devices.get(device_id))


@devices_router.put("/api/devices/{device_id}/binding", response_model=DeviceOut)
async def bind_device(device_id: str, body: BindingIn, devices: Devices) -> DeviceOut:
    return DeviceOut.of(await devices.bind(device_id, body.patient_id))


@devices_router.delete("/api/devices/{device_id}/binding", response_model=DeviceOut)
async def unbind_device(device_id: str, devices: Devices) -> DeviceOut:
    return DeviceOut.of(await devices.unbind(device_id))


@devices_router.get("/api/quarantine", response_model=QuarantinePage)
async def list_quarantine(
    telemetry: Telemetry,
    device_id: DeviceId | None = None,
    reason: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    before: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> QuarantinePage:
    items = await telemetry.quarantined(
        device_id=device_id, reason=reason, before=before, limit=limit
    )
    next_before = items[-1].id if len(items) == limit else None
    return QuarantinePage(items=[QuarantineOut.of(q) for q in items], next_before=next_before)


@monitor_router.get("/api/patients/{patient_id}/vitals", response_model=VitalsList)
async def patient_vitals(
    patient_id: UUID,
    monitor: Monitor,
    since: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    every: Annotated[
        int | None,
        Query(ge=1, le=86_400, description="Seconds: only the newest reading of each slice."),
    ] = None,
) -> VitalsList:
    readings = await monitor.vitals(patient_id, since=since, limit=limit, every_s=every)
    return VitalsList(items=[VitalsOut.of(r) for r in readings])


@monitor_router.get("/api/news2", response_model=News2Page)
async def latest_news2(
    monitor: Monitor,
    ward: Annotated[str | None, Query(min_length=1, max_length=MAX_WARD_LENGTH)] = None,
    after: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> News2Page:
    """Every monitored patient's current NEWS2 (by patient id; page on with `after`)."""
    found = await monitor.latest_news2(ward=ward, after=after, limit=limit)
    next_after = found[-1].patient_id if len(found) == limit else None
    return News2Page(items=[PatientNews2Out.of(x) for x in found], next_after=next_after)


@monitor_router.get("/api/patients/{patient_id}/news2", response_model=News2Out)
async def patient_news2(patient_id: UUID, monitor: Monitor) -> News2Out:
    return News2Out.model_validate((await monitor.news2(patient_id)).to_dict())


@monitor_router.get("/api/alerts", response_model=AlertList)
async def list_alerts(
    monitor: Monitor,
    status: AlertStatus | None = None,
    severity: Severity | None = None,
    ward: Annotated[str | None, Query(min_length=1, max_length=MAX_WARD_LENGTH)] = None,
    patient_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AlertList:
    found = await monitor.alerts(
        status=status, severity=severity, ward=ward, patient_id=patient_id, limit=limit
    )
    return AlertList(items=[AlertOut.of(a) for a in found])


@monitor_router.post("/api/alerts/{alert_id}/ack", response_model=AlertOut)
async def acknowledge_alert(alert_id: UUID, body: AckIn, monitor: Monitor) -> AlertOut:
    return AlertOut.of(await monitor.acknowledge(alert_id, by=body.by))


@monitor_router.post("/api/analytics/vitals", response_model=VitalsRecordedOut)
async def record_vitals(body: VitalSignsEventIn, monitor: Monitor) -> VitalsRecordedOut:
    """A worker hands in a VitalSignsRecorded event: stored, scored and alerted on once; the
    answer says whether the worker must now move the patient to critical."""
    outcome, first = await monitor.record(body.to_recorded())
    return _recorded_out(body.id, outcome, first)


@monitor_router.post("/api/analytics/vitals/batch", response_model=VitalsBatchRecordedOut)
async def record_vitals_batch(body: VitalSignsBatchIn, monitor: Monitor) -> VitalsBatchRecordedOut:
    """What a worker's queue held, in order, in one transaction: each event as if handed in
    alone, at the cost of one call. If one cannot be recorded none is, and the problem names it
    (the worker then hands them in one at a time, so only that one is retried)."""
    results = await monitor.record_many([e.to_recorded() for e in body.events])
    return VitalsBatchRecordedOut(
        results=[
            _recorded_out(event.id, outcome, first)
            for event, (outcome, first) in zip(body.events, results, strict=True)
        ]
    )


def _recorded_out(reading_id: str, outcome: Outcome, first: bool) -> VitalsRecordedOut:
    call = critical_call(outcome)
    return VitalsRecordedOut(
        reading_id=reading_id,
        duplicate=not first,
        news2=outcome.assessment.to_dict() if outcome.assessment else None,
        alert=AlertOut.of(outcome.alert) if outcome.alert else None,
        critical=CriticalCallOut(alert_id=call.alert_id, reason=call.reason) if call else None,
    )


# Telemetry errors and the problem each becomes; the first matching class wins.
_PROBLEMS: list[tuple[type[DomainError], int, str, str]] = [
    (DeviceAuthFailed, 401, "Device authentication failed", "device-auth-failed"),
    (DeviceNotFound, 404, "Device not found", "device-not-found"),
    (DeviceTaken, 409, "Device already registered", "device-taken"),
    (DeviceUnbound, 409, "Device not bound to a patient", "device-unbound"),
    (PatientNotMonitored, 409, "Patient discharged", "patient-discharged"),
    (AlertNotFound, 404, "Alert not found", "alert-not-found"),
    (AlertResolved, 409, "Alert already resolved", "alert-resolved"),
    (AlertChanged, 409, "Alert changed meanwhile", "alert-changed"),
    (NoAssessment, 404, "No NEWS2 assessment yet", "no-assessment"),
]


def install_error_handlers(app: FastAPI) -> None:
    """Map telemetry's typed errors to RFC 9457 problems (the core's http.py does the rest)."""

    @app.exception_handler(DomainError)
    async def _telemetry_problem(_: Request, exc: DomainError) -> JSONResponse:
        if isinstance(exc, TelemetryBusy):
            return problem(
                503,
                "Telemetry intake busy",
                str(exc),
                slug="telemetry-busy",
                headers={"Retry-After": str(exc.retry_after_s)},
            )
        if isinstance(exc, ReadingsRefused):
            errors = [
                {"field": f"readings.{i}.{p.field}", "message": p.message, "type": p.reason}
                for i, p in exc.problems
            ]
            return problem(
                422, "Readings refused", str(exc), slug="readings-refused", errors=errors
            )
        if isinstance(exc, DeviceInvalid):
            errors = [{"field": "device_id", "message": str(exc), "type": "value_error"}]
            return problem(422, "Invalid request", str(exc), slug="validation-error", errors=errors)
        for cls, status, title, slug in _PROBLEMS:
            if isinstance(exc, cls):
                headers = {"WWW-Authenticate": "DeviceKey"} if status == 401 else None
                return problem(status, title, str(exc), slug=slug, headers=headers)
        return problem(400, "Request refused", str(exc), slug="refused")
