"""The patient and the rules of a hospital stay: plain Python, no I/O, time passed in."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

MAX_NAME_LENGTH = 100
MAX_WARD_LENGTH = 50
MAX_BED_LENGTH = 20
MAX_MRN_LENGTH = 32
MAX_REASON_LENGTH = 500
EARLIEST_BIRTH_DATE = date(1900, 1, 1)


class Sex(enum.StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class Status(enum.StrEnum):
    REGISTERED = "registered"
    WAITING = "waiting"
    IN_TREATMENT = "in_treatment"
    ADMITTED = "admitted"
    CRITICAL = "critical"
    STABLE = "stable"
    DISCHARGED = "discharged"


S = Status
# Every allowed move of a stay. Anything absent is refused; discharged leads nowhere.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.REGISTERED: frozenset({S.WAITING, S.IN_TREATMENT, S.ADMITTED, S.CRITICAL, S.DISCHARGED}),
    S.WAITING: frozenset({S.IN_TREATMENT, S.ADMITTED, S.CRITICAL, S.DISCHARGED}),
    S.IN_TREATMENT: frozenset({S.ADMITTED, S.CRITICAL, S.STABLE, S.DISCHARGED}),
    S.ADMITTED: frozenset({S.IN_TREATMENT, S.CRITICAL, S.STABLE, S.DISCHARGED}),
    # critical -> discharged stays allowed: a death or a transfer out ends the stay from any state
    S.CRITICAL: frozenset({S.IN_TREATMENT, S.ADMITTED, S.STABLE, S.DISCHARGED}),
    S.STABLE: frozenset({S.IN_TREATMENT, S.ADMITTED, S.CRITICAL, S.DISCHARGED}),
    S.DISCHARGED: frozenset(),
}

# Statuses a patient waits in before treatment starts: the span counted as wait time.
WAITING_STATUSES = frozenset({S.REGISTERED, S.WAITING})


class DomainError(Exception):
    """Base of every rule a request can break; mapped to a problem response at the edge."""


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


class PatientInvalid(DomainError):
    """The patient's data breaks a rule; each problem names its field."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


class TransitionRefused(DomainError):
    """The requested status change is not in the transition table."""

    def __init__(self, current: Status, requested: Status) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (terminal)"
        super().__init__(
            f"cannot change status from {current} to {requested}; allowed from {current}: {allowed}"
        )
        self.current = current
        self.requested = requested


class PatientNotFound(DomainError):
    def __init__(self, patient_id: UUID) -> None:
        super().__init__(f"no patient with id {patient_id}")
        self.patient_id = patient_id


class MrnTaken(DomainError):
    def __init__(self, mrn: str) -> None:
        super().__init__(f"a patient with MRN {mrn!r} is already registered")
        self.mrn = mrn


class PatientChanged(DomainError):
    """Someone else changed the patient since the version the caller saw."""

    def __init__(self, patient_id: UUID, expected: int, actual: int) -> None:
        super().__init__(
            f"patient {patient_id} is at version {actual}, not the expected version {expected}"
        )
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class NewPatient:
    """What a clinician supplies at registration."""

    given_name: str
    family_name: str
    birth_date: date
    sex: Sex
    ward: str
    bed: str | None = None
    mrn: str | None = None


@dataclass(frozen=True)
class StatusChange:
    """One move of a stay, as recorded in the patient's history."""

    previous: Status
    status: Status
    reason: str | None
    source: str | None
    at: datetime


@dataclass(frozen=True)
class Patient:
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
    def register(cls, new: NewPatient, *, patient_id: UUID, mrn: str, at: datetime) -> Patient:
        """A patient arriving: validated, status `registered`, version 1."""
        validate(new, today=at.date())
        return cls(
            id=patient_id,
            mrn=mrn,
            given_name=new.given_name,
            family_name=new.family_name,
            birth_date=new.birth_date,
            sex=new.sex,
            ward=new.ward,
            bed=new.bed,
            status=Status.REGISTERED,
            version=1,
            created_at=at,
            updated_at=at,
            status_since=at,
        )

    def change_status(
        self, new: Status, *, reason: str | None, source: str | None, at: datetime
    ) -> tuple[Patient, StatusChange]:
        """Move the stay on; raises TransitionRefused for a move not in the table."""
        if new not in TRANSITIONS[self.status]:
            raise TransitionRefused(self.status, new)
        _check_reason(reason)
        changed = dataclasses.replace(
            self, status=new, version=self.version + 1, updated_at=at, status_since=at
        )
        return changed, StatusChange(self.status, new, reason, source, at)

    def age_band(self, today: date) -> str:
        """A de-identified age: ten-year bands, 90+ pooled as HIPAA Safe Harbor asks."""
        return age_band(self.birth_date, today)


def age_band(birth_date: date, today: date) -> str:
    years = (
        today.year
        - birth_date.year
        - ((today.month, today.day) < (birth_date.month, birth_date.day))
    )
    if years >= 90:
        return "90+"
    low = (max(years, 0) // 10) * 10
    return f"{low}-{low + 9}"


def validate(new: NewPatient, *, today: date) -> None:
    """Raise PatientInvalid listing every broken rule of a registration."""
    problems: list[FieldProblem] = []
    for name in ("given_name", "family_name"):
        value: str = getattr(new, name)
        if not value.strip():
            problems.append(FieldProblem(name, "must not be empty"))
        elif len(value) > MAX_NAME_LENGTH:
            problems.append(FieldProblem(name, f"must be at most {MAX_NAME_LENGTH} characters"))
    if not new.ward.strip():
        problems.append(FieldProblem("ward", "must not be empty"))
    elif len(new.ward) > MAX_WARD_LENGTH:
        problems.append(FieldProblem("ward", f"must be at most {MAX_WARD_LENGTH} characters"))
    if new.bed is not None and (not new.bed.strip() or len(new.bed) > MAX_BED_LENGTH):
        problems.append(FieldProblem("bed", f"must be 1 to {MAX_BED_LENGTH} characters"))
    if new.mrn is not None and (not new.mrn.strip() or len(new.mrn) > MAX_MRN_LENGTH):
        problems.append(FieldProblem("mrn", f"must be 1 to {MAX_MRN_LENGTH} characters"))
    if new.birth_date > today:
        problems.append(FieldProblem("birth_date", "must not be in the future"))
    elif new.birth_date < EARLIEST_BIRTH_DATE:
        problems.append(FieldProblem("birth_date", f"must not be before {EARLIEST_BIRTH_DATE}"))
    if problems:
        raise PatientInvalid(problems)


def _check_reason(reason: str | None) -> None:
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise PatientInvalid(
            [FieldProblem("reason", f"must be at most {MAX_REASON_LENGTH} characters")]
        )
