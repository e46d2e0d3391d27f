"""Patient routes: parse, call the service, shape the reply."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from healthflow.http import BadRequest
from healthflow.patients.domain import MAX_WARD_LENGTH, Status
from healthflow.patients.schemas import (
    CriticalIn,
    EventHistory,
    PatientIn,
    PatientOut,
    PatientPage,
    StatusChangeIn,
)
from healthflow.patients.service import PatientService

router = APIRouter(prefix="/api/patients", tags=["patients"])


async def _service(request: Request) -> PatientService:
    service: PatientService = request.app.state.patients
    return service


Service = Annotated[PatientService, Depends(_service)]


@router.post("", status_code=201, response_model=PatientOut)
async def register(body: PatientIn, service: Service, response: Response) -> PatientOut:
    patient = await service.register(body.to_domain())
    response.headers["Location"] = f"/api/patients/{patient.id}"
    return PatientOut.of(patient)


@router.get("", response_model=PatientPage)
async def list_patients(
    service: Service,
    status: Status | None = None,
    ward: Annotated[str | None, Query(min_length=1, max_length=MAX_WARD_LENGTH)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> PatientPage:
    page = await service.page(status=status, ward=ward, after=_decode(cursor), limit=limit)
    next_cursor = _encode(page.next_after) if page.next_after else None
    return PatientPage(items=[PatientOut.of(p) for p in page.items], next_cursor=next_cursor)


@router.get("/{patient_id}", response_model=PatientOut)
async def get_patient(patient_id: UUID, service: Service, response: Response) -> PatientOut:
    patient = await service.get(patient_id)
    response.headers["ETag"] = _etag(patient.version)
    return PatientOut.of(patient)


@router.put("/{patient_id}/status", response_model=PatientOut)
async def change_status(
    patient_id: UUID,
    body: StatusChangeIn,
    service: Service,
    response: Response,
    if_match: Annotated[str | None, Header(max_length=64)] = None,
) -> PatientOut:
    patient = await service.change_status(
        patient_id, body.status, reason=body.reason, expected_version=_version(if_match)
    )
    response.headers["ETag"] = _etag(patient.version)
    return PatientOut.of(patient)


@router.post("/{patient_id}/critical", response_model=PatientOut)
async def mark_critical(patient_id: UUID, body: CriticalIn, service: Service) -> PatientOut:
    patient = await service.mark_critical(
        patient_id, reason=body.reason, source=body.source, alert_id=body.alert_id
    )
    return PatientOut.of(patient)


@router.get("/{patient_id}/events", response_model=EventHistory)
async def history(patient_id: UUID, service: Service) -> EventHistory:
    return EventHistory(items=[e.to_dict() for e in await service.history(patient_id)])


def _etag(version: int) -> str:
    return f'"{version}"'


def _version(if_match: str | None) -> int | None:
    """The patient version an `If-Match: "3"` asks for; None for no header or `*`."""
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise BadRequest('If-Match must be an ETag of this API, like "3"', field="If-Match")
    return int(tag)


def _encode(after: UUID) -> str:
    return base64.urlsafe_b64encode(after.bytes).rstrip(b"=").decode()


def _decode(cursor: str | None) -> UUID | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return UUID(bytes=raw)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("cursor is not one this service issued", field="cursor") from exc
