"""The telemetry ports over HTTP: how the worker process reaches the services that own the data.

- `HttpAssessor` → analytics `POST /api/analytics/vitals/batch` (the vitals series, NEWS2,
  alerts), one call for what a worker took from its queue;
- `HttpCriticalStatus` → patients `POST /api/patients/{id}/critical` (once per alert);
- `HttpDeviceMessages` → patients `POST /api/telemetry/messages` (the MQTT subscriber's
  messages into the durable intake; messages handed in together go in one call).

The first two go through a ServiceCaller (retries with jitter, circuit breaker): a failure after
the last attempt propagates, so the bus retries the delivery and never acks it unprocessed. The
MQTT subscriber retries by itself (it holds the PUBACK), so the third is a single plain call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import httpx
import orjson

from healthflow.messaging.events import batch_to_json
from healthflow.service_calls import ServiceCaller, ServiceRefused
from healthflow.storage.batching import Batch, Batcher
from healthflow.vitals.domain import DeviceAuthFailed, TelemetryBusy
from healthflow.vitals.events import RecordedReading, vital_signs_recorded
from healthflow.vitals.ports import (
    Assessed,
    CriticalCall,
    CriticalRefused,
    DeviceMessage,
    MessageRefused,
)
from healthflow.vitals.schemas import MAX_RELAYED

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
    """The DeviceMessages port from a worker process: the patients service's HTTP intake.

    What the subscriber took from the broker together goes in one call (as many as fit in the
    service's body limit), and so do messages handed in one by one while a call is in flight.
    """

    def __init__(self, patients: httpx.AsyncClient, *, max_body_bytes: int) -> None:
        self._patients = patients
        self._max_body_bytes = max_body_bytes
        self._calls = Batcher[DeviceMessage, None](
            "telemetry.relay", handle=self._relay, max_batch=MAX_RELAYED
        )

    async def submit(self, device_id: str, key: str | None, body: dict[str, Any]) -> None:
        """One message, relayed with whatever else is handed in meanwhile; raises its refusal."""
        await self._calls.submit(DeviceMessage(device_id, key, body))

    async def submit_many(self, messages: Sequence[DeviceMessage]) -> list[Exception | None]:
        refusals: list[Exception | None] = []
        for outcome in await self._calls.submit_many(messages):
            if isinstance(outcome, TelemetryBusy | IntakeUnavailable) or (
                outcome is not None and not isinstance(outcome, Exception)
            ):
                raise outcome  # all are sent again; those the intake took are repeats
            refusals.append(outcome)
        return refusals

    async def _relay(self, batch: Batch[DeviceMessage, None]) -> None:
        try:
            encoded = [
                orjson.dumps({"device_id": m.device_id, "device_key": m.key, "body": m.body})
                for m, _ in batch
            ]
            start, size = 0, 0
            for end, message in enumerate(encoded):
                size += len(message) + 1
                if end > start and size + len(_ENVELOPE) > self._max_body_bytes:
                    await self._post(batch[start:end], encoded[start:end])
                    start, size = end, len(message) + 1
            await self._post(batch[start:], encoded[start:])
        except Exception as exc:  # whatever went wrong, no message may wait for an answer for ever
            failure = f"{type(exc).__name__}: {exc}"
            _settle(batch, lambda: IntakeUnavailable(failure))

    async def _post(self, batch: Batch[DeviceMessage, None], encoded: list[bytes]) -> None:
        content = b'{"messages":[' + b",".join(encoded) + b"]}"
        try:
            response = await self._patients.post(RELAY_PATH, content=content, headers=JSON)
        except httpx.HTTPError as exc:
            failure = f"{type(exc).__name__}: {exc}"
            return _settle(batch, lambda: IntakeUnavailable(failure))
        status = response.status_code
        if status == 413 and len(batch) == 1:
            return _settle(batch, lambda: MessageRefused("too_large", response.text[:500]))
        if status != 200:
            # a refused call (a 4xx here is our mistake, not the device's) is tried again too:
            # the messages stay unacknowledged at the broker until the intake takes them
            return _settle(batch, lambda: IntakeUnavailable(f"intake answered {status}"))
        # an answer without one outcome per message raises here: all are tried again
        errors = [_refusal(result) for result in response.json()["results"]]
        if len(errors) != len(batch):
            raise ValueError(f"{len(errors)} outcomes for {len(batch)} messages")
        for (_, future), error in zip(batch, errors, strict=True):
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
        return None


RELAY_PATH = "/api/telemetry/messages"
_ENVELOPE = b'{"messages":[]}'


def _settle(batch: Batch[DeviceMessage, None], error: Callable[[], Exception]) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error())


def _refusal(result: dict[str, Any]) -> Exception | None:
    """What the subscriber is told of one message: nothing once stored, else why not."""
    outcome = result["outcome"]
    if outcome == "stored":
        return None
    if outcome == "auth_failed":
        return DeviceAuthFailed()
    if outcome == "busy":
        return TelemetryBusy(int(result.get("retry_after_s") or 5))
    return MessageRefused(outcome, str(result.get("detail") or ""))
