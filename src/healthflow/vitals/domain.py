"""A vital-signs reading, the device that sends it, and the ranges a body can produce.

Plain Python: no I/O, no framework, time passed in.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from uuid import UUID

MAX_BATCH = 1000
# A device clock a little ahead of ours is normal; further ahead is a broken clock.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# Device ids follow IoT Hub's rules minus the characters MQTT topics reserve ("/", "+", "#").
DEVICE_ID_PATTERN = r"^[A-Za-z0-9._:@=-]{1,128}$"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
MAX_KIND_LENGTH = 50


class Consciousness(enum.StrEnum):
    """ACVPU: alert, new confusion, responds to voice, to pain, unresponsive."""

    ALERT = "A"
    CONFUSION = "C"
    VOICE = "V"
    PAIN = "P"
    UNRESPONSIVE = "U"


class DomainError(Exception):
    """Base of every telemetry rule a request can break."""


class DeviceNotFound(DomainError):
    def __init__(self, device_id: str) -> None:
        super().__init__(f"no device with id {device_id!r}")
        self.device_id = device_id


class DeviceTaken(DomainError):
    def __init__(self, device_id: str) -> None:
        super().__init__(f"a device with id {device_id!r} is already registered")
        self.device_id = device_id


class DeviceInvalid(DomainError):
    """A device id or kind breaks the naming rules."""


class DeviceAuthFailed(DomainError):
    """Unknown device or wrong key: one answer for both, so ids cannot be probed."""

    def __init__(self) -> None:
        super().__init__("device id and key do not match a registered device")


class DeviceUnbound(DomainError):
    """The device is bound to no patient; its readings went to quarantine."""

    def __init__(self, device_id: str, quarantined: int) -> None:
        super().__init__(
            f"device {device_id!r} is bound to no patient; "
            f"{quarantined} reading(s) kept in quarantine"
        )
        self.device_id = device_id
        self.quarantined = quarantined


class PatientNotMonitored(DomainError):
    """A discharged patient's stay is over: no device may be bound to them."""

    def __init__(self, patient_id: UUID) -> None:
        super().__init__(f"patient {patient_id} is discharged; devices cannot be bound to them")
        self.patient_id = patient_id


class ReadingsRefused(DomainError):
    """Every reading of a request broke a physiological rule; all went to quarantine."""

    def __init__(self, problems: list[tuple[int, ReadingProblem]]) -> None:
        super().__init__("; ".join(f"readings[{i}].{p.field}: {p.message}" for i, p in problems))
        self.problems = problems


class TelemetryBusy(DomainError):
    """The intake backlog is full: the client should retry after a pause."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("telemetry intake is full; retry later")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Device:
    device_id: str
    kind: str
    patient_id: UUID | None
    registered_at: datetime


def check_device(device_id: str, kind: str) -> None:
    """Raise DeviceInvalid for an id MQTT topics cannot carry or an empty kind."""
    if not _DEVICE_ID.match(device_id):
        raise DeviceInvalid("device_id must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ = -")
    if not kind.strip() or len(kind) > MAX_KIND_LENGTH:
        raise DeviceInvalid(f"kind must be 1 to {MAX_KIND_LENGTH} characters")


@dataclass(frozen=True)
class Reading:
    """One set of measurements a device took at `ts`; any measurement may be absent."""

    ts: datetime
    heart_rate: float | None = None
    resp_rate: float | None = None
    spo2: float | None = None
    systolic_bp: float | None = None
    diastolic_bp: float | None = None
    temperature: float | None = None
    consciousness: Consciousness | None = None
    on_oxygen: bool | None = None
    spo2_scale: int | None = None
    # what `measurements` found, kept by its first call: a field (not in __init__, repr or
    # comparisons) so every instance has the slot from the start
    _measured_once: dict[str, float | str | bool] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def measurements(self) -> dict[str, float | str | bool]:
        """The parameters present in this reading (ts and spo2_scale excluded), a new dict."""
        return dict(self._measured())

    def _measured(self) -> dict[str, float | str | bool]:
        # asked for four times a reading on the hot path (its event, its score, its row, its
        # live push): worked out once and kept on the instance (a copy costs a tenth as much).
        # Not functools.cached_property: on Python 3.11 it takes a lock on every first call
        measured = self._measured_once
        if measured is None:
            measured = {
                name: value for name in MEASUREMENTS if (value := getattr(self, name)) is not None
            }
            if self.consciousness is not None:
                measured["consciousness"] = self.consciousness.value
            object.__setattr__(self, "_measured_once", measured)  # frozen: fields only
        return measured


# a reading's measured parameters, in field order (looked up per reading: kept as a constant)
MEASUREMENTS = tuple(
    f.name for f in fields(Reading) if f.init and f.name not in ("ts", "spo2_scale")
)


@dataclass(frozen=True)
class ReadingProblem:
    field: str
    reason: str
    message: str


# Plausible limits of a living adult, inclusive. Outside them the sensor, not the patient, is
# the likelier cause, so the reading is quarantined instead of scored.
RANGES: dict[str, tuple[float, float]] = {
    "heart_rate": (0, 300),
    "resp_rate": (0, 80),
    "spo2": (0, 100),
    "systolic_bp": (0, 300),
    "diastolic_bp": (0, 250),
    "temperature": (25.0, 45.0),
}


def check_reading(reading: Reading, *, now: datetime) -> list[ReadingProblem]:
    """Every physiological or temporal rule the reading breaks; empty when it can be scored."""
    problems: list[ReadingProblem] = []
    for name, (low, high) in RANGES.items():
        value = getattr(reading, name)
        if value is not None and not low <= value <= high:
            problems.append(
                ReadingProblem(name, "out_of_range", f"{value} is outside {low}..{high}")
            )
    if (
        reading.systolic_bp is not None
        and reading.diastolic_bp is not None
        and reading.diastolic_bp >= reading.systolic_bp
        and not problems
    ):
        problems.append(ReadingProblem("diastolic_bp", "implausible", "must be below systolic_bp"))
    if reading.spo2_scale is not None and reading.spo2_scale not in (1, 2):
        problems.append(ReadingProblem("spo2_scale", "out_of_range", "must be 1 or 2"))
    if reading.ts > now + MAX_CLOCK_SKEW:
        problems.append(
            ReadingProblem("ts", "in_future", f"{reading.ts.isoformat()} is ahead of the server")
        )
    if not reading._measured():
        problems.append(ReadingProblem("reading", "empty", "carries no measurement"))
    return problems


@dataclass(frozen=True)
class QuarantinedReading:
    """A reading refused for a reason a clinician or technician may want to look into."""

    id: UUID
    device_id: str
    patient_id: UUID | None
    reason: str
    field: str
    message: str
    payload: dict[str, object]
    received_at: datetime
