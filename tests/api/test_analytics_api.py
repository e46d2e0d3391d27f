"""Analytics intake (what workers call) and the dashboard summary."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from healthflow.analytics.client import HttpAnalyticsSink
from healthflow.circuit_breaker import CircuitBreaker
from healthflow.messaging.events import CloudEvent
from healthflow.patients import events
from healthflow.patients.domain import NewPatient, Patient, Sex
from tests.api.test_patients_api import assert_problem
from tests.conftest import auth_headers, eventually, patient_body
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


async def test_a_batch_records_its_events_in_order_each_once(client: httpx.AsyncClient) -> None:
    before, first, second = created_event(), created_event(), created_event()
    await client.post("/api/analytics/events", json=before)

    answer = await client.post(
        "/api/analytics/events/batch", json={"events": [first, before, second, first]}
    )

    assert answer.status_code == 200
    assert answer.json()["results"] == [
        {"event_id": first["id"], "duplicate": False},
        {"event_id": before["id"], "duplicate": True},  # recorded before the batch
        {"event_id": second["id"], "duplicate": False},
        {"event_id": first["id"], "duplicate": True},  # repeated within the batch
    ]
    summary = (await client.get("/api/analytics/dashboard")).json()
    assert summary["patients_total"] == 3 and summary["events_processed_total"] == 3


@pytest.mark.parametrize("batch", ["empty", "too many", "one not a patient event", "not a list"])
async def test_a_bad_batch_is_refused_whole_and_records_nothing(
    client: httpx.AsyncClient, batch: str
) -> None:
    bodies: dict[str, Any] = {
        "empty": {"events": []},
        "too many": {"events": [created_event() for _ in range(1001)]},
        "one not a patient event": {"events": [created_event(), {**created_event(), "id": ""}]},
        "not a list": {"events": created_event()},
    }

    response = await client.post("/api/analytics/events/batch", json=bodies[batch])

    assert_problem(response, 422)
    summary = (await client.get("/api/analytics/dashboard")).json()
    assert summary["events_processed_total"] == 0


async def test_the_worker_sink_hands_a_batch_in_few_calls_and_answers_in_order(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.url.path)

    sink = HttpAnalyticsSink(
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers=auth_headers(app, "service"),
            event_hooks={"request": [record]},
        ),
        CircuitBreaker("analytics", failures=5, reset_s=60),
        attempts=2,
        max_wait_s=0.01,
    )
    monkeypatch.setattr("healthflow.analytics.client.RECORD_CHUNK", 2)
    batch = [CloudEvent.from_dict(created_event()) for _ in range(3)]

    firsts = await sink.record_many([*batch, batch[0]])

    assert sent == ["/api/analytics/events/batch"] * 2  # 4 events in calls of at most 2
    assert firsts == [True, True, True, False]
    summary = (await client.get("/api/analytics/dashboard")).json()
    assert summary["events_processed_total"] == 3


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
