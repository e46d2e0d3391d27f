"""Analytics intake (what workers call) and the dashboard summary."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest

from healthflow.patients import events
from healthflow.patients.domain import NewPatient, Patient, Sex
from tests.api.test_patients_api import assert_problem
from tests.conftest import eventually, patient_body


def created_event() -> dict[str, Any]:
    patient = Patient.register(
        NewPatient("A", "B", date(1970, 1, 1), Sex.MALE, "ED"),
        patient_id=uuid4(),
        mrn="M",
        at=datetime.now(UTC),
    )
    return events.created(patient).to_dict()


async def test_an_event_posted_twice_is_recorded_once(client: httpx.AsyncClient) -> None:
    event = created_event()
    first = await client.post("/api/analytics/events", json=event)
    second = await client.post("/api/analytics/events", json=event)
    assert first.json() == {"event_id": event["id"], "duplicate": False}
    assert second.json() == {"event_id": event["id"], "duplicate": True}
    summary = (await client.get("/api/analytics/dashboard")).json()
    assert summary["patients_total"] == 1 and summary["events_processed_total"] == 1


@pytest.mark.parametrize(
    "change",
    [
        {"specversion": "0.3"},
        {"type": "SomethingElse"},
        {"time": "yesterday"},
        {"id": ""},
        {"data": {"patient_id": "x"}},
        {"data": None},
        {"unexpected": True},
    ],
)
async def test_events_that_are_not_patient_cloudevents_are_refused(
    client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    response = await client.post("/api/analytics/events", json={**created_event(), **change})
    assert_problem(response, 422)
    summary = (await client.get("/api/analytics/dashboard")).json()
    assert summary["events_processed_total"] == 0


async def test_dashboard_has_every_promised_figure(client: httpx.AsyncClient) -> None:
    await client.post("/api/patients", json=patient_body())

    async def counted() -> bool:
        summary = (await client.get("/api/analytics/dashboard", params={"days": 3})).json()
        return bool(summary["events_processed_total"] == 1)

    await eventually(counted)
    summary = (await client.get("/api/analytics/dashboard", params={"days": 3})).json()
    assert {
        "patients_total",
        "patients_by_status",
        "registrations_by_day",
        "events_by_type_by_day",
        "critical_now",
        "average_wait_minutes",
        "events_processed_total",
        "generated_at",
    } <= summary.keys()
    assert summary["days"] == 3 and len(summary["registrations_by_day"]) == 3
    assert summary["registrations_by_day"][-1]["count"] == 1
    assert summary["patients_by_status"]["registered"] == 1


@pytest.mark.parametrize("days", [0, 91, -1, "week"])
async def test_dashboard_window_must_be_one_to_ninety_days(
    client: httpx.AsyncClient, days: object
) -> None:
    assert_problem(await client.get("/api/analytics/dashboard", params={"days": days}), 422)
