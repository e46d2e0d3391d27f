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
from tests.telemetry_support import CRITICAL, WORRYING, admit_with_device, at, post_readings


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


@pytest.mark.parametrize("days", ["1.5", "", "7 days", "99999999999999999999", "NaN"])
async def test_a_dashboard_window_that_is_not_a_whole_number_of_days_is_a_problem(
    client: httpx.AsyncClient, days: str
) -> None:
    response = await client.get("/api/analytics/dashboard", params={"days": days})
    assert_problem(response, 422)
    assert response.json()["errors"][0]["field"] == "days"


async def test_alerts_per_day_count_each_raised_alert_once_by_severity(
    client: httpx.AsyncClient,
) -> None:
    critical, critical_key = await admit_with_device(client, "mon-c")
    urgent, urgent_key = await admit_with_device(client, "mon-u")
    # three critical readings: one alert kept current, not three
    critical_readings = [{"ts": at(n), **CRITICAL} for n in range(3)]
    await post_readings(client, "mon-c", critical_key, critical_readings)
    await post_readings(client, "mon-u", urgent_key, [{"ts": at(0), **WORRYING}])

    async def both_raised() -> bool:
        return len((await client.get("/api/alerts")).json()["items"]) == 2

    await eventually(both_raised)
    alerts = (await client.get("/api/alerts")).json()["items"]
    assert {(a["patient_id"], a["severity"]) for a in alerts} == {
        (critical, "critical"),
        (urgent, "urgent"),
    }
    expected: dict[str, dict[str, int]] = {}
    for alert in alerts:
        day = datetime.fromisoformat(alert["opened_at"]).astimezone(UTC).date().isoformat()
        counts = expected.setdefault(day, {"urgent": 0, "critical": 0})
        counts[alert["severity"]] += 1

    async def counted() -> bool:
        summary = (await client.get("/api/analytics/dashboard", params={"days": 2})).json()
        return sum(d["count"] for d in summary["alerts_by_day"]) == 2

    await eventually(counted)
    summary = (await client.get("/api/analytics/dashboard", params={"days": 2})).json()
    days = summary["alerts_by_day"]
    assert [d["day"] for d in days] == [d["day"] for d in summary["registrations_by_day"]]
    for day in days:
        by_severity = expected.get(day["day"], {"urgent": 0, "critical": 0})
        assert day["by_severity"] == by_severity
        assert day["count"] == sum(by_severity.values())


async def test_alerts_per_day_cover_every_day_of_the_window_with_zeros(
    client: httpx.AsyncClient,
) -> None:
    summary = (await client.get("/api/analytics/dashboard", params={"days": 30})).json()
    assert len(summary["alerts_by_day"]) == 30
    assert summary["alerts_by_day"][-1]["day"] == summary["registrations_by_day"][-1]["day"]
    assert all(
        d["count"] == 0 and d["by_severity"] == {"urgent": 0, "critical": 0}
        for d in summary["alerts_by_day"]
    )
