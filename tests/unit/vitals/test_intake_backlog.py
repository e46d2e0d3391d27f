"""The intake's backlog: readings in its outbox plus readings waiting on the bus for workers."""

from __future__ import annotations

from typing import Any

import pytest

from healthflow.vitals.domain import TelemetryBusy
from healthflow.vitals.service import TelemetryService
from tests.conftest import SteppingClock


class Outbox:
    """The part of the TelemetryIntake port the backlog reads."""

    def __init__(self, unpublished: int) -> None:
        self.unpublished = unpublished

    async def backlog(self) -> int:
        return self.unpublished


def service(unpublished: int, on_bus: int, limit: int = 100) -> TelemetryService:
    async def waiting() -> int:
        return on_bus

    intake: Any = Outbox(unpublished)
    devices: Any = None  # admitting asks no device
    return TelemetryService(
        devices, intake, SteppingClock(), backlog_limit=limit, waiting_on_bus=waiting
    )


async def test_readings_waiting_on_the_bus_count_towards_the_backlog() -> None:
    assert await service(unpublished=10, on_bus=30).backlog() == 40


async def test_the_intake_refuses_once_outbox_and_bus_together_reach_the_limit() -> None:
    # a broker takes everything the relay publishes: the outbox alone would never fill
    with pytest.raises(TelemetryBusy):
        await service(unpublished=0, on_bus=100).admit(transport="http")


async def test_the_intake_admits_below_the_limit() -> None:
    await service(unpublished=40, on_bus=59).admit(transport="http")
