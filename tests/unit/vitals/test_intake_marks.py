"""The intake hands on what it checked: readings it accepted carry the mark the monitor trusts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import uuid4

from healthflow.vitals.domain import Device, Reading
from healthflow.vitals.events import RecordedReading
from healthflow.vitals.service import TelemetryService
from tests.conftest import SteppingClock


class Devices:
    async def ward(self, patient_id: Any) -> str:
        return "W1"


class Intake:
    """The TelemetryIntake port, keeping what it was handed."""

    def __init__(self) -> None:
        self.accepted: list[RecordedReading] = []
        self.quarantined: list[Any] = []

    async def backlog(self) -> int:
        return 0

    async def accept_many(
        self, requests: Sequence[tuple[Sequence[RecordedReading], Sequence[Any]]]
    ) -> list[int]:
        for accepted, quarantined in requests:
            self.accepted += accepted
            self.quarantined += quarantined
        return [0] * len(requests)


async def test_accepted_readings_are_marked_checked_and_refused_ones_never_reach_it() -> None:
    clock = SteppingClock()
    devices: Any = Devices()
    intake = Intake()
    service = TelemetryService(devices, intake, clock, backlog_limit=100)
    device = Device("mon-1", "monitor", uuid4(), clock.now())
    at = clock.now() - timedelta(seconds=30)
    good = Reading(ts=at, heart_rate=72.0)
    bad = Reading(ts=at + timedelta(seconds=2), heart_rate=900.0)  # outside the physiological range
    result = await service.ingest(device, [good, bad], transport="http")
    assert (result.accepted, len(result.rejected)) == (1, 1)
    [accepted] = intake.accepted
    assert accepted.reading == good and accepted.checked
    assert len(intake.quarantined) == 1
