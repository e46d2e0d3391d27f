"""Analytics routes: the workers' intake and the dashboard summary."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from healthflow.analytics.service import AnalyticsService
from healthflow.messaging.events import CloudEvent
from healthflow.patients.domain import Status

router = APIRouter(prefix="/api/analytics", tags=["analytics"])


async def _service(request: Request) -> AnalyticsService:
    service: AnalyticsService = request.app.state.analytics
    return service


Service = Annotated[AnalyticsService, Depends(_service)]


class PatientEventData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patient_id: UUID
    ward: Annotated[str, Field(min_length=1, max_length=50)]
    bed: str | None = None
    sex: str
    age_band: str
    status: Status
    version: Annotated[int, Field(ge=1, le=2_147_483_647)]
    registered_at: datetime
    previous_status: Status | None = None
    reason: str | None = None
    source: str | None = None
    alert_id: UUID | None = None  # the clinical alert behind a move into critical


class PatientEventIn(BaseModel):
    """A CloudEvent 1.0 (structured JSON) carrying a patient event."""

    model_config = ConfigDict(extra="forbid")
    specversion: Literal["1.0"]
    id: Annotated[str, Field(min_length=1, max_length=64)]
    source: Annotated[str, Field(min_length=1, max_length=200)]
    type: Literal["PatientCreated", "PatientStatusUpdated", "PatientCritical"]
    time: datetime
    subject: Annotated[str, Field(min_length=1, max_length=64)]
    datacontenttype: Literal["application/json"] = "application/json"
    partitionkey: str | None = None
    data: PatientEventData

    def to_event(self) -> CloudEvent:
        return CloudEvent.from_dict(self.model_dump(mode="json"))


class Recorded(BaseModel):
    event_id: str
    duplicate: bool


# most events one batch may carry: what a worker takes from its queue (HEALTHFLOW_WORKER_BATCH_SIZE)
# fits, in calls the worker splits to at most this many
MAX_EVENTS_BATCH = 1000


class PatientEventsIn(BaseModel):
    """Patient events in the order a worker took them: recorded in one transaction."""

    model_config = ConfigDict(extra="forbid")
    events: Annotated[list[PatientEventIn], Field(min_length=1, max_length=MAX_EVENTS_BATCH)]


class RecordedBatch(BaseModel):
    """One result per event, in the order they were handed in."""

    results: list[Recorded]


@router.post("/events", response_model=Recorded)
async def record_event(body: PatientEventIn, service: Service) -> Recorded:
    first = await service.record(body.to_event())
    return Recorded(event_id=body.id, duplicate=not first)


@router.post("/events/batch", response_model=RecordedBatch)
async def record_events(body: PatientEventsIn, service: Service) -> RecordedBatch:
    """What a worker's queue held, in order, in one transaction, each event as if handed in
    alone (an event repeated, within the batch or from before, is a duplicate)."""
    firsts = await service.record_many([e.to_event() for e in body.events])
    return RecordedBatch(
        results=[
            Recorded(event_id=e.id, duplicate=not first)
            for e, first in zip(body.events, firsts, strict=True)
        ]
    )


class DayCount(BaseModel):
    day: date
    count: int


class DayEvents(BaseModel):
    day: date
    counts: dict[str, int]  # by event type; types that did not occur that day are absent


class AlertsBySeverity(BaseModel):
    urgent: int
    critical: int


class DayAlerts(BaseModel):
    day: date
    count: int
    by_severity: AlertsBySeverity  # the severity now: an escalated urgent alert is critical


class Dashboard(BaseModel):
    """The analytics summary for the last `days` UTC days, today included; per-day lists have
    one entry for every day of the window, oldest first."""

    days: int
    patients_total: int
    patients_by_status: dict[str, int]  # every status, zeros included
    registrations_by_day: list[DayCount]
    events_by_type_by_day: list[DayEvents]
    critical_now: int
    average_wait_minutes: float | None
    waits_counted: int
    events_processed_total: int
    alerts_by_day: list[DayAlerts]  # clinical alerts raised (opened) per day
    generated_at: datetime


@router.get("/dashboard", response_model=Dashboard)
async def dashboard(
    service: Service,
    days: Annotated[int, Query(ge=1, le=90, description="Days in the window, today included.")] = 7,
) -> Dashboard:
    return Dashboard.model_validate(await service.dashboard(days))
