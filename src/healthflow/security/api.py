"""`GET /api/audit`: the audit trail for admins (who may read it is in the permission table)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel

from healthflow.security.audit import AuditRecord, SqlAuditTrail

router = APIRouter(prefix="/api/audit", tags=["audit"])


class AuditRecordOut(BaseModel):
    seq: int
    id: str
    at: datetime
    subject: str
    role: str
    action: str
    resource_type: str
    resource_id: str | None
    outcome: str
    client: str | None
    request_id: str | None
    detail: str | None
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, record: AuditRecord) -> AuditRecordOut:
        return cls.model_construct(**record.__dict__)


class AuditPage(BaseModel):
    items: list[AuditRecordOut]
    next_after: int | None


@router.get("", response_model=AuditPage)
async def list_audit(
    request: Request,
    patient_id: UUID | None = None,
    subject: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    since: AwareDatetime | None = None,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    trail: SqlAuditTrail = request.app.state.audit
    records = await trail.search(
        resource_id=str(patient_id) if patient_id else None,
        subject=subject,
        since=since,
        after_seq=after,
        limit=limit,
    )
    next_after = records[-1].seq if len(records) == limit else None
    return AuditPage(items=[AuditRecordOut.of(r) for r in records], next_after=next_after)
