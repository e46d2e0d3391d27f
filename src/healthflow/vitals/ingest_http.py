"""`POST /api/devices/{device_id}/telemetry`: a device posts its own readings with its key."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Request
from pydantic.json_schema import models_json_schema

from healthflow.http import extend_openapi
from healthflow.vitals.domain import DEVICE_ID_PATTERN
from healthflow.vitals.schemas import (
    BatchIn,
    IngestOut,
    ReadingIn,
    Rejection,
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
