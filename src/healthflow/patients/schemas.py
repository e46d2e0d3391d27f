"""The patient API's request and response bodies (JSON, snake_case, unknown fields refused)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from healthflow.patients.domain import (
    MAX_MRN_LENGTH,
    MAX_NAME_LENGTH,
    MAX_REASON_LENGTH,
    MAX_WARD_LENGTH,
    NewPatient,
    Patient,
    Sex,
    Status,
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _iso_text(value: object) -> object:
    # JSON has no date type: only an ISO 8601 string is a date here, never a number
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date string (YYYY-MM-DD)")
    return value


Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
Reason = Annotated[str, Field(max_length=MAX_REASON_LENGTH)]


class PatientIn(_Body):
    given_name: Name
    family_name: Name
    birth_date: Annotated[date, BeforeValidator(_iso_text)]
    sex: Sex
    ward: Annotated[str, Field(min_length=1, max_length=MAX_WARD_LENGTH)]
    bed: Annotated[str, Field(min_length=1, max_length=20)] | None = None
    mrn: Annotated[str, Field(min_length=1, max_length=MAX_MRN_LENGTH)] | None = None

    def to_domain(self) -> NewPatient:
        return NewPatient(**self.model_dump())


class StatusChangeIn(_Body):
    status: Status
    reason: Reason | None = None


class CriticalIn(_Body):
    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON_LENGTH)]
    source: Annotated[str, Field(min_length=1, max_length=100)]
    # the clinical alert behind the move: at most one move into critical per alert
    alert_id: UUID | None = None


class PatientOut(BaseModel):
    id: UUID
    mrn: str
    given_name: str
    family_name: str
    birth_date: date
    sex: Sex
    ward: str
    bed: str | None
    status: Status
    version: int
    created_at: datetime
    updated_at: datetime
    status_since: datetime

    @classmethod
    def of(cls, patient: Patient) -> PatientOut:
        return cls.model_construct(**patient.__dict__)


class PatientPage(BaseModel):
    items: list[PatientOut]
    next_cursor: str | None


class EventHistory(BaseModel):
    items: list[dict[str, Any]]
