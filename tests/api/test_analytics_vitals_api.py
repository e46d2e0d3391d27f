"""POST /api/analytics/vitals: a worker hands in a VitalSignsRecorded event, handled once."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.conftest import patient_body
from tests.telemetry_support import CRITICAL, at


def event(patient_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid4()),
        "source": "/healthflow/devices/mon-1",
        "type": "VitalSignsRecorded",
        "time": at(60),
        "subject": patient_id,
        "data": {
            "device_id": "mon-1",
            "patient_id": patient_id,
            "reading": {"ts": at(0), **CRITICAL},
        },
    }
    body.update(overrides)
    return body


async def test_a_handed_in_reading_is_scored_alerted_on_and_deduplicated(
    client: httpx.AsyncClient,
) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
    body = event(patient_id)
    first = await client.post("/api/analytics/vitals", json=body)
    assert first.status_code == 200
    assert first.json()["duplicate"] is False
    assert first.json()["news2"]["risk"] == "high"
    assert first.json()["alert"]["severity"] == "critical"
    again = await client.post("/api/analytics/vitals", json=body)
    assert again.json()["duplicate"] is True
    assert again.json()["alert"]["readings"] == 1
    assert len((await client.get(f"/api/patients/{patient_id}/vitals")).json()["items"]) == 1


async def test_the_answer_asks_the_caller_to_move_the_patient_to_critical_once_per_alert(
    client: httpx.AsyncClient,
) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
    body = event(patient_id)
    first = (await client.post("/api/analytics/vitals", json=body)).json()
    again = (await client.post("/api/analytics/vitals", json=body)).json()
    later = event(patient_id, id=str(uuid4()))
    later["data"]["reading"]["ts"] = at(1)
    updated = (await client.post("/api/analytics/vitals", json=later)).json()

    # raised as critical: the caller moves the patient, keyed by the alert; a redelivery asks
    # again (the first caller may have died before moving), an update of the alert does not
    assert first["critical"] == {
        "alert_id": first["alert"]["id"],
        "reason": f"NEWS2 {first['news2']['total']} (high risk)",
    }
    assert again["critical"] == first["critical"]
    assert updated["critical"] is None
    # the route itself leaves the patient to the patients service (the caller's next step)
    assert (await client.get(f"/api/patients/{patient_id}")).json()["status"] == "registered"


async def test_the_ward_carried_in_the_event_files_the_alert(client: httpx.AsyncClient) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body(ward="ICU"))).json()["id"]
    body = event(patient_id)
    body["data"]["ward"] = "HDU"  # what the intake found; the service does not ask again

    answer = await client.post("/api/analytics/vitals", json=body)

    assert answer.json()["alert"]["ward"] == "HDU"


def fill(value: Any, names: dict[str, str]) -> Any:
    """The test table with its {placeholders} replaced."""
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    return names.get(value, value) if isinstance(value, str) else value


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"type": "PatientCreated"}, 422),
        ({"specversion": "0.3"}, 422),
        ({"subject": "{other}"}, 422),
        ({"time": "2026-11-25T09:00:00"}, 422),
        ({"id": "x" * 37}, 422),
        ({"extra": 1}, 422),
        ({"data": {"device_id": "a/b", "patient_id": "{patient}", "reading": {"ts": "{ts}"}}}, 422),
        (
            {
                "data": {
                    "device_id": "m",
                    "patient_id": "{patient}",
                    "reading": {"ts": "{ts}", "spo2": 101},
                }
            },
            422,
        ),
        (
            {
                "data": {
                    "device_id": "m",
                    "patient_id": "{other}",
                    "reading": {"ts": "{ts}", "spo2": 97},
                },
                "subject": "{other}",
            },
            404,
        ),
    ],
)
async def test_bad_events_are_refused_and_change_nothing(
    client: httpx.AsyncClient, change: dict[str, Any], status: int
) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
    names = {"{patient}": patient_id, "{other}": str(uuid4()), "{ts}": at(0)}
    body = event(patient_id, **fill(change, names))
    response = await client.post("/api/analytics/vitals", json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get(f"/api/patients/{patient_id}/vitals")).json()["items"] == []
    assert (await client.get("/api/alerts")).json()["items"] == []


def later_event(patient_id: str, second: int, **reading: Any) -> dict[str, Any]:
    body = event(patient_id)
    body["data"]["reading"] = {"ts": at(second), **(reading or CRITICAL)}
    return body


async def test_a_batch_is_handled_in_order_as_its_events_one_by_one(
    client: httpx.AsyncClient,
) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
    first, update = later_event(patient_id, 0), later_event(patient_id, 1)

    answer = await client.post(
        "/api/analytics/vitals/batch", json={"events": [first, first, update]}
    )
    assert answer.status_code == 200
    results = answer.json()["results"]
    again = await client.post("/api/analytics/vitals/batch", json={"events": [update]})

    assert [r["reading_id"] for r in results] == [first["id"], first["id"], update["id"]]
    # the repeat inside the batch is the same reading: one row, one alert, one critical move
    assert results[0]["critical"] == {
        "alert_id": results[0]["alert"]["id"],
        "reason": f"NEWS2 {results[0]['news2']['total']} (high risk)",
    }
    assert results[2]["critical"] is None  # the same alert, updated by the later reading
    assert results[2]["alert"]["readings"] == 2
    assert again.json()["results"][0]["duplicate"] is True
    stored = (await client.get(f"/api/patients/{patient_id}/vitals")).json()["items"]
    assert len(stored) == 2


@pytest.mark.parametrize(
    ("events", "status"),
    [
        ("none", 422),
        ("too many", 422),
        ("one invalid", 422),
        ("one unknown patient", 404),
    ],
)
async def test_a_bad_batch_is_refused_whole_and_changes_nothing(
    client: httpx.AsyncClient, events: str, status: int
) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
    good = [later_event(patient_id, n) for n in range(3)]
    other = str(uuid4())
    unknown = event(other, subject=other)
    unknown["data"]["patient_id"] = other
    batches = {
        "none": [],
        "too many": [later_event(patient_id, n) for n in range(1001)],
        "one invalid": [*good, later_event(patient_id, 9, spo2=101)],
        "one unknown patient": [*good, unknown],
    }

    response = await client.post("/api/analytics/vitals/batch", json={"events": batches[events]})

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get(f"/api/patients/{patient_id}/vitals")).json()["items"] == []
    assert (await client.get("/api/alerts")).json()["items"] == []
