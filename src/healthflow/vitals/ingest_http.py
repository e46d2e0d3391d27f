"""The HTTP intake: `POST /api/devices/{device_id}/telemetry`, a device posting its own readings
with its key, and `POST /api/telemetry/messages`, device messages an MQTT subscriber in another
process (the worker role) relays in one call."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic.json_schema import models_json_schema

from healthflow.http import extend_openapi
from healthflow.vitals.domain import (
    DEVICE_ID_PATTERN,
    DeviceAuthFailed,
    DeviceUnbound,
    ReadingsRefused,
    TelemetryBusy,
)
from healthflow.vitals.ingest_mqtt import LocalIntake
from healthflow.vitals.ports import DeviceMessage
from healthflow.vitals.schemas import (
    BatchIn,
    IngestOut,
    ReadingIn,
    Rejection,
    RelayedMessagesIn,
    RelayedMessagesOut,
    RelayedOutcome,
    parse_readings_json,
)
from healthflow.vitals.service import TelemetryService

router = APIRouter(tags=["telemetry"])


async def _telemetry(request: Request) -> TelemetryService:
    service: TelemetryService = request.app.state.telemetry
    return service


# the body is read as bytes and validated in one pass (parse_readings_json), so the schema is
# documented here rather than inferred from a parameter (document_body adds its models)
_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/ReadingIn"},
                        {"$ref": "#/components/schemas/BatchIn"},
                    ]
                }
            }
        },
    }
}


def document_body(app: FastAPI) -> None:
    """Put the telemetry body's models in the OpenAPI components the route refers to."""

    def add_models(schema: dict[str, Any]) -> None:
        _, defs = models_json_schema(
            [(ReadingIn, "validation"), (BatchIn, "validation")],
            ref_template="#/components/schemas/{model}",
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, model_schema in defs["$defs"].items():
            components.setdefault(name, model_schema)  # FastAPI's own rendering, where it has one

    extend_openapi(app, add_models)


@router.post(
    "/api/devices/{device_id}/telemetry",
    status_code=202,
    response_model=IngestOut,
    openapi_extra=_BODY_SCHEMA,
)
async def post_telemetry(
    request: Request,
    device_id: Annotated[str, Path(pattern=DEVICE_ID_PATTERN)],
    telemetry: Annotated[TelemetryService, Depends(_telemetry)],
    x_device_key: Annotated[str | None, Header(max_length=200)] = None,
    # set by the worker's MQTT subscriber when it relays a device's message (the split
    # topology); only a metrics label, so a device that sends it mislabels nothing but counts
    x_telemetry_transport: Annotated[Literal["http", "mqtt"], Header()] = "http",
) -> IngestOut:
    """One reading, or `{"readings": [...]}` (at most 1,000); 202 once stored durably."""
    transport = x_telemetry_transport
    device = await telemetry.authenticate(device_id, x_device_key, transport=transport)
    await telemetry.admit(transport=transport)
    readings = parse_readings_json(await request.body())
    result = await telemetry.ingest(device, readings, transport=transport)
    return IngestOut(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=len(result.rejected),
        rejections=[Rejection.of(i, p) for i, p in result.rejected],
    )


@router.post("/api/telemetry/messages", response_model=RelayedMessagesOut)
async def post_relayed_messages(
    body: RelayedMessagesIn, telemetry: Annotated[TelemetryService, Depends(_telemetry)]
) -> RelayedMessagesOut:
    """Device messages the worker's MQTT subscriber took from the broker (at most 500), each
    handled as `POST /api/devices/{id}/telemetry` with its own key would handle it, and stored
    together, in order. One outcome per message, in order; an intake too busy for them answers
    `busy` for every message and takes none. Any other failure fails the call, and the caller
    sends them all again (a reading stored twice is one reading)."""
    results: list[RelayedOutcome | None] = [None] * len(body.messages)
    indexes: list[int] = []
    for index, message in enumerate(body.messages):
        if _DEVICE_ID.match(message.device_id):
            indexes.append(index)
        else:
            detail = f"device_id must match {DEVICE_ID_PATTERN}"
            results[index] = RelayedOutcome(outcome="invalid", detail=detail)
    messages = [body.messages[i] for i in indexes]
    try:
        refusals = await LocalIntake(telemetry).submit_many(
            [DeviceMessage(m.device_id, m.device_key, m.body) for m in messages]
        )
    except TelemetryBusy as exc:
        busy = RelayedOutcome(outcome="busy", retry_after_s=exc.retry_after_s)
        return RelayedMessagesOut(results=[busy if r is None else r for r in results])
    for index, refusal in zip(indexes, refusals, strict=True):
        results[index] = _outcome(refusal)
    return RelayedMessagesOut(results=[r for r in results if r is not None])


_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)


def _outcome(refusal: Exception | None) -> RelayedOutcome:
    if refusal is None:
        return RelayedOutcome(outcome="stored")
    if isinstance(refusal, DeviceAuthFailed):
        return RelayedOutcome(outcome="auth_failed")
    if isinstance(refusal, RequestValidationError):
        return RelayedOutcome(outcome="invalid", detail=str(refusal.errors())[:500])
    if isinstance(refusal, DeviceUnbound | ReadingsRefused):  # stored in the quarantine
        return RelayedOutcome(outcome="quarantined", detail=str(refusal)[:500])
    raise refusal  # nothing else is a refusal for good: the call fails, the caller retries
