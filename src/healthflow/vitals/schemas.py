"""Request and response bodies of the telemetry API (JSON, snake_case, unknown fields refused)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi.exceptions import RequestValidationError
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    model_validator,
)

from healthflow.patients.domain import MAX_WARD_LENGTH
from healthflow.vitals.alerts import MAX_ACKNOWLEDGER_LENGTH, Alert, AlertStatus, Severity
from healthflow.vitals.domain import (
    DEVICE_ID_PATTERN,
    MAX_BATCH,
    MAX_KIND_LENGTH,
    Consciousness,
    Device,
    QuarantinedReading,
    Reading,
    ReadingProblem,
)
from healthflow.vitals.events import RecordedReading
from healthflow.vitals.monitor import alert_to_dict
from healthflow.vitals.news2 import Risk
from healthflow.vitals.ports import LatestNews2, StoredReading


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# JSON numbers only (no "80" strings, no booleans), never NaN or infinity
Measurement = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class ReadingIn(_Body):
    ts: AwareDatetime
    heart_rate: Measurement | None = None
    resp_rate: Measurement | None = None
    spo2: Measurement | None = None
    systolic_bp: Measurement | None = None
    diastolic_bp: Measurement | None = None
    temperature: Measurement | None = None
    consciousness: Consciousness | None = None
    on_oxygen: StrictBool | None = None
    spo2_scale: Literal[1, 2] | None = None

    def to_domain(self) -> Reading:
        # the validated fields as they are: model_dump() would copy and convert each again.
        # The instant in `datetime.UTC`, whatever offset the device wrote (pydantic's own
        # zero-offset tzinfo included): everything downstream stores and compares UTC, and
        # converts a value already in `UTC` by its fastest path (SQLite's text: about 1.6
        # times as fast as with pydantic's zero-offset tzinfo, BENCHMARKS.md session 14)
        values = dict(vars(self))
        values["ts"] = self.ts.astimezone(UTC)
        return Reading(**values)


class BatchIn(_Body):
    readings: Annotated[list[ReadingIn], Field(min_length=1, max_length=MAX_BATCH)]


def parse_readings(payload: dict[str, Any]) -> list[Reading]:
    """One reading, or `{"readings": [...]}`; schema errors become a 422 listing each field."""
    try:
        if "readings" in payload:
            return [r.to_domain() for r in BatchIn.model_validate(payload).readings]
        return [ReadingIn.model_validate(payload).to_domain()]
    except ValidationError as exc:
        raise _invalid(exc) from exc


def parse_readings_json(raw: bytes) -> list[Reading]:
    """`parse_readings` straight from the request's bytes, parsed and checked in one pass.

    Several times faster than decoding to Python objects and validating those, which is most
    of what ingesting a batch of 1,000 readings costs.
    """
    try:
        return [r.to_domain() for r in BatchIn.model_validate_json(raw).readings]
    except ValidationError as exc:
        if not _no_readings_member(exc):
            raise _invalid(exc) from exc
    try:  # no "readings" member: the body is one reading, or nothing valid
        return [ReadingIn.model_validate_json(raw).to_domain()]
    except ValidationError as exc:
        raise _invalid(exc) from exc


def _no_readings_member(exc: ValidationError) -> bool:
    return any(e["type"] == "missing" and e["loc"] == ("readings",) for e in exc.errors())


def _invalid(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError(
        [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
    )


class VitalSignsData(_Body):
    device_id: Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
    patient_id: UUID
    reading: ReadingIn
    # the patient's ward as the intake found it; without it the service looks it up
    ward: Annotated[str, Field(min_length=1, max_length=MAX_WARD_LENGTH)] | None = None


class VitalSignsEventIn(_Body):
    """A VitalSignsRecorded CloudEvent 1.0 (structured JSON), as the bus carries it."""

    specversion: Literal["1.0"]
    id: Annotated[str, Field(min_length=1, max_length=36)]
    source: Annotated[str, Field(min_length=1, max_length=200)]
    type: Literal["VitalSignsRecorded"]
    time: AwareDatetime
    subject: Annotated[str, Field(min_length=1, max_length=64)]
    datacontenttype: Literal["application/json"] = "application/json"
    partitionkey: str | None = None
    data: VitalSignsData

    @model_validator(mode="after")
    def _subject_is_the_patient(self) -> VitalSignsEventIn:
        if self.subject != str(self.data.patient_id):
            raise ValueError("subject must be the patient id in data.patient_id")
        return self

    def to_recorded(self) -> RecordedReading:
        return RecordedReading(
            reading_id=self.id,
            device_id=self.data.device_id,
            patient_id=self.data.patient_id,
            reading=self.data.reading.to_domain(),
            received_at=self.time,
            ward=self.data.ward,
        )


class VitalSignsBatchIn(_Body):
    """VitalSignsRecorded events in the order a worker took them: recorded in one transaction."""

    events: Annotated[list[VitalSignsEventIn], Field(min_length=1, max_length=MAX_BATCH)]


class CriticalCallOut(BaseModel):
    """The caller must now move the patient to critical, keyed by this alert (once per alert)."""

    alert_id: UUID
    reason: str


class VitalsRecordedOut(BaseModel):
    reading_id: str
    duplicate: bool
    news2: dict[str, Any] | None
    alert: AlertOut | None
    critical: CriticalCallOut | None


class VitalsBatchRecordedOut(BaseModel):
    """One result per event, in the order they were handed in."""

    results: list[VitalsRecordedOut]


class Rejection(BaseModel):
    index: int
    field: str
    reason: str
    message: str

    @classmethod
    def of(cls, index: int, problem: ReadingProblem) -> Rejection:
        return cls(index=index, field=problem.field, reason=problem.reason, message=problem.message)


class IngestOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    rejections: list[Rejection]


# most device messages relayed in one call: what the MQTT subscriber takes from the broker at once
MAX_RELAYED = 500


class RelayedMessageIn(_Body):
    """One MQTT message as the subscriber took it: the device from its topic, its body (one
    reading or `{"readings": [...]}`) and the key it carried."""

    # checked per message, so one bad topic refuses only its own message
    device_id: Annotated[str, Field(min_length=1, max_length=1024)]
    device_key: Annotated[str | None, Field(max_length=200)] = None
    body: dict[str, Any]


class RelayedMessagesIn(_Body):
    messages: Annotated[list[RelayedMessageIn], Field(min_length=1, max_length=MAX_RELAYED)]


class RelayedOutcome(BaseModel):
    """What became of one relayed message: `stored` (durably, as a 202 would say), refused for
    good (`auth_failed`, `invalid`, `quarantined`), or `busy`: the intake is full, so none of
    the call's messages was taken; send them again after `retry_after_s`."""

    outcome: Literal["stored", "auth_failed", "invalid", "quarantined", "busy"]
    detail: str | None = None
    retry_after_s: int | None = None


class RelayedMessagesOut(BaseModel):
    results: list[RelayedOutcome]


class DeviceIn(_Body):
    device_id: Annotated[str, Field(min_length=1, max_length=128)]
    patient_id: UUID
    kind: Annotated[str, Field(min_length=1, max_length=MAX_KIND_LENGTH)]


class BindingIn(_Body):
    patient_id: UUID


class DeviceOut(BaseModel):
    device_id: str
    patient_id: UUID | None
    kind: str
    registered_at: datetime

    @classmethod
    def of(cls, device: Device) -> DeviceOut:
        return cls(
            device_id=device.device_id,
            patient_id=device.patient_id,
            kind=device.kind,
            registered_at=device.registered_at,
        )


class RegisteredOut(BaseModel):
    device_id: str
    patient_id: UUID
    kind: str
    key: str


class DeviceList(BaseModel):
    items: list[DeviceOut]


class QuarantineOut(BaseModel):
    id: UUID
    device_id: str
    patient_id: UUID | None
    reason: str
    field: str
    message: str
    reading: dict[str, Any]
    received_at: datetime

    @classmethod
    def of(cls, q: QuarantinedReading) -> QuarantineOut:
        return cls(
            id=q.id,
            device_id=q.device_id,
            patient_id=q.patient_id,
            reason=q.reason,
            field=q.field,
            message=q.message,
            reading=dict(q.payload),
            received_at=q.received_at,
        )


class QuarantinePage(BaseModel):
    items: list[QuarantineOut]
    next_before: UUID | None


class News2Out(BaseModel):
    total: int
    risk: Risk
    sub_scores: dict[str, int]
    carried_forward: list[str]
    missing: list[str]
    assessed_at: datetime
    spo2_scale: int


class VitalsOut(BaseModel):
    reading_id: str
    device_id: str
    ts: datetime
    values: dict[str, float | str | bool]
    news2: News2Out | None

    @classmethod
    def of(cls, r: StoredReading) -> VitalsOut:
        return cls(
            reading_id=r.reading_id,
            device_id=r.device_id,
            ts=r.ts,
            values=r.values,
            news2=News2Out.model_validate(r.assessment.to_dict()) if r.assessment else None,
        )


class VitalsList(BaseModel):
    items: list[VitalsOut]


class PatientNews2Out(News2Out):
    patient_id: UUID
    ward: str | None

    @classmethod
    def of(cls, latest: LatestNews2) -> PatientNews2Out:
        return cls.model_validate(
            {**latest.assessment.to_dict(), "patient_id": latest.patient_id, "ward": latest.ward}
        )


class News2Page(BaseModel):
    items: list[PatientNews2Out]
    next_after: UUID | None


class AckIn(_Body):
    by: Annotated[str, Field(min_length=1, max_length=MAX_ACKNOWLEDGER_LENGTH)]


class AlertOut(BaseModel):
    id: UUID
    patient_id: UUID
    ward: str
    severity: Severity
    status: AlertStatus
    score: int
    risk: Risk
    peak_score: int
    readings: int
    opened_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    # grows with every change: of two copies of an alert, the higher version is the newer
    version: int

    @classmethod
    def of(cls, alert: Alert) -> AlertOut:
        return cls.model_validate(alert_to_dict(alert))


class AlertList(BaseModel):
    items: list[AlertOut]


VitalsRecordedOut.model_rebuild()
