"""The telemetry ports over HTTP: how the worker process reaches the services that own the data.

- `HttpAssessor` → analytics `POST /api/analytics/vitals/batch` (the vitals series, NEWS2,
  alerts), one call for what a worker took from its queue;
- `HttpCriticalStatus` → patients `POST /api/patients/{id}/critical` (once per alert);
- `HttpDeviceMessages` → patients `POST /api/devices/{id}/telemetry` (the MQTT subscriber's
  messages into the durable intake).

The first two go through a ServiceCaller (retries with jitter, circuit breaker): a failure after
the last attempt propagates, so the bus retries the delivery and never acks it unprocessed. The
MQTT subscriber retries by itself (it holds the PUBACK), so the third is a single plain call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
import orjson

from healthflow.messaging.events import batch_to_json
from healthflow.service_calls import ServiceCaller, ServiceRefused, problem_type
from healthflow.vitals.domain import DeviceAuthFailed, TelemetryBusy
from healthflow.vitals.events import RecordedReading, vital_signs_recorded
from healthflow.vitals.ports import (
    Assessed,
    CriticalCall,
    CriticalRefused,
    MessageRefused,
)

JSON = {"content-type": "application/json"}
# most readings handed to the analytics service in one call: 500 events are about 400 KB
ASSESS_CHUNK = 500


class HttpAssessor:
    """The Assessor port from a worker process: the analytics service records and scores."""

    def __init__(self, analytics: ServiceCaller) -> None:
        self._analytics = analytics

    async def assess_many(self, batch: Sequence[RecordedReading]) -> list[Assessed]:
        # in order, in calls of at most ASSESS_CHUNK events (well inside the body size limit)
        assessed: list[Assessed] = []
        for start in range(0, len(batch), ASSESS_CHUNK):
            assessed.extend(await self._assess(batch[start : start + ASSESS_CHUNK]))
        return assessed

    async def _assess(self, chunk: Sequence[RecordedReading]) -> list[Assessed]:
        body = b'{"events":' + batch_to_json([vital_signs_recorded(r) for r in chunk]) + b"}"
        response = await self._analytics.send(
            "POST", "/api/analytics/vitals/batch", content=body, headers=JSON
        )
        if response.status_code != 200:
            # e.g. 404 for a patient the projection has not seen yet: the worker pool retries
            # the readings one by one, and the bus retries the one refused
            raise ServiceRefused(self._analytics.name, response)
        return [_assessed(result) for result in response.json()["results"]]


def _assessed(result: dict[str, Any]) -> Assessed:
    critical = result.get("critical")
    call = CriticalCall(UUID(critical["alert_id"]), critical["reason"]) if critical else None
    return Assessed(not result["duplicate"], call)


# problems of POST /api/patients/{id}/critical that no retry can change
_CRITICAL_REFUSALS = {"/problems/patient-not-found", "/problems/transition-refused"}


class HttpCriticalStatus:
    """The CriticalStatus port from a worker process: the patients service makes the move."""

    def __init__(self, patients: ServiceCaller) -> None:
        self._patients = patients

    async def mark_critical(
        self, patient_id: UUID, *, reason: str, source: str, alert_id: UUID | None = None
    ) -> None:
        body: dict[str, Any] = {"reason": reason, "source": source}
        if alert_id is not None:
            body["alert_id"] = str(alert_id)
        response = await self._patients.send(
            "POST", f"/api/patients/{patient_id}/critical", content=orjson.dumps(body), headers=JSON
        )
        if response.status_code == 200:
            return
        refused = ServiceRefused(self._patients.name, response)
        if refused.problem_type in _CRITICAL_REFUSALS:
            raise CriticalRefused(str(refused)) from refused
        # e.g. 409 patient-changed (a concurrent change): the bus delivers it again shortly
        raise refused


class IntakeUnavailable(Exception):
    """The patients service's intake could not be reached or failed: try the message again."""


class HttpDeviceMessages:
    """The DeviceMessages port from a worker process: the patients service's HTTP intake."""

    def __init__(self, patients: httpx.AsyncClient) -> None:
        self._patients = patients

    async def submit(self, device_id: str, key: str | None, body: dict[str, Any]) -> None:
        headers = {**JSON, "x-telemetry-transport": "mqtt"}
        if key is not None:
            headers["x-device-key"] = key
        try:
            # the id comes from a topic anyone may publish on: quoted, it stays one path segment
            path = f"/api/devices/{quote(device_id, safe='')}/telemetry"
            response = await self._patients.post(path, content=orjson.dumps(body), headers=headers)
        except httpx.HTTPError as exc:
            raise IntakeUnavailable(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status == 202:
            return
        if status == 401:
            raise DeviceAuthFailed()
        if status == 503 and problem_type(response) == "/problems/telemetry-busy":
            raise TelemetryBusy(_retry_after(response))
        if 400 <= status < 500:
            raise MessageRefused(_refusal_reason(response), response.text[:500])
        raise IntakeUnavailable(f"intake answered {status}")


def _refusal_reason(response: httpx.Response) -> str:
    kind = problem_type(response)
    if kind in ("/problems/readings-refused", "/problems/device-unbound"):
        return "quarantined"  # stored in the quarantine, counted by the intake
    if response.status_code == 413:
        return "too_large"
    return "invalid"


def _retry_after(response: httpx.Response) -> int:
    raw = response.headers.get("retry-after", "")
    return int(raw) if raw.isdigit() else 5
