"""`POST /api/devices/{device_id}/telemetry`: a device posts its own readings with its key."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Path, Request

from healthflow.vitals.domain import DEVICE_ID_PATTERN
from healthflow.vitals.schemas import IngestOut, Rejection, parse_readings
from healthflow.vitals.service import TelemetryService

router = APIRouter(tags=["telemetry"])


def _telemetry(request: Request) -> TelemetryService:
    service: TelemetryService = request.app.state.telemetry
    return service


@router.post("/api/devices/{device_id}/telemetry", status_code=202, response_model=IngestOut)
async def post_telemetry(
    device_id: Annotated[str, Path(pattern=DEVICE_ID_PATTERN)],
    payload: Annotated[dict[str, Any], Body()],
    telemetry: Annotated[TelemetryService, Depends(_telemetry)],
    x_device_key: Annotated[str | None, Header(max_length=200)] = None,
    # set by the worker's MQTT subscriber when it relays a device's message (the split
    # topology); only a metrics label, so a device that sends it mislabels nothing but counts
    x_telemetry_transport: Annotated[Literal["http", "mqtt"], Header()] = "http",
) -> IngestOut:
    """One reading, or `{"readings": [...]}` (at most 1,000); 202 once stored durably."""
    transport = x_telemetry_transport
    device = await telemetry.authenticate(device_id, x_device_key, transport=transport)
    result = await telemetry.ingest(device, parse_readings(payload), transport=transport)
    return IngestOut(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=len(result.rejected),
        rejections=[Rejection.of(i, p) for i, p in result.rejected],
    )
