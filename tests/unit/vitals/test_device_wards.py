"""The ward a device's readings are filed under: read once per patient, since it never changes."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from healthflow.patients.domain import PatientNotFound
from healthflow.vitals.service import DeviceService
from tests.conftest import SteppingClock


class Directory:
    """The part of the Patients port the ward needs, counting its reads."""

    def __init__(self, wards: dict[UUID, str]) -> None:
        self.wards = wards
        self.reads: list[UUID] = []

    async def ward(self, patient_id: UUID) -> str:
        self.reads.append(patient_id)
        if patient_id not in self.wards:
            raise PatientNotFound(patient_id)
        return self.wards[patient_id]


def devices(directory: Directory, remembered: int = 10) -> DeviceService:
    registry: Any = None  # the ward asks no device
    patients: Any = directory
    return DeviceService(registry, patients, SteppingClock(), wards_remembered=remembered)


async def test_a_patients_ward_is_read_once_and_then_remembered() -> None:
    a, b = uuid4(), uuid4()
    directory = Directory({a: "ICU", b: "A&E"})
    service = devices(directory)

    assert [await service.ward(p) for p in [a, a, b, a, b]] == ["ICU", "ICU", "A&E", "ICU", "A&E"]
    assert directory.reads == [a, b]


async def test_beyond_its_bound_the_oldest_ward_is_forgotten_and_read_again() -> None:
    patients = [uuid4() for _ in range(3)]
    directory = Directory({p: f"W{n}" for n, p in enumerate(patients)})
    service = devices(directory, remembered=2)

    for p in [*patients, patients[0]]:
        await service.ward(p)

    assert directory.reads == [*patients, patients[0]]


async def test_an_unknown_patient_is_never_remembered() -> None:
    ghost = uuid4()
    directory = Directory({})
    service = devices(directory)
    for _ in range(2):
        with pytest.raises(PatientNotFound):
            await service.ward(ghost)
    assert directory.reads == [ghost, ghost]
