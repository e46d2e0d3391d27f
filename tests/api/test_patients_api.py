"""Every patient endpoint: success paths and every way a client can get it wrong."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.conftest import patient_body

PROBLEM = "application/problem+json"


async def register(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/api/patients", json=patient_body(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


async def count(client: httpx.AsyncClient) -> int:
    return len((await client.get("/api/patients", params={"limit": 500})).json()["items"])


# --- registration --------------------------------------------------------------------------


async def test_registration_returns_the_patient_and_its_location(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/patients", json=patient_body(bed="12B"))
    body = response.json()
    assert response.status_code == 201
    assert response.headers["location"] == f"/api/patients/{body['id']}"
    assert body["status"] == "registered" and body["version"] == 1
    assert body["bed"] == "12B" and body["mrn"].startswith("HF")
    fetched = await client.get(response.headers["location"])
    assert fetched.json() == body


async def test_a_given_mrn_is_kept_and_a_second_use_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    first = await register(client, mrn="MRN-0001")
    assert first["mrn"] == "MRN-0001"
    again = await client.post("/api/patients", json=patient_body(mrn="MRN-0001"))
    assert_problem(again, 409)
    assert await count(client) == 1


@pytest.mark.parametrize(
    "name",
    [
        "O'Brien",
        'Robert"); DROP TABLE patients;--',
        "1' OR '1'='1",
        "Zoë 😀🏥",
        "李小龍",
        "Ωμέγα",
        "محمد",
        "x" * 100,
    ],
)
async def test_names_are_stored_and_returned_exactly(client: httpx.AsyncClient, name: str) -> None:
    body = await register(client, given_name=name, family_name=name)
    fetched = (await client.get(f"/api/patients/{body['id']}")).json()
    assert fetched["given_name"] == fetched["family_name"] == name


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"given_name": ""}, "given_name"),
        ({"given_name": "   "}, "given_name"),
        ({"family_name": "x" * 101}, "family_name"),
        ({"given_name": 42}, "given_name"),
        ({"birth_date": "2999-01-01"}, "birth_date"),
        ({"birth_date": "1899-12-31"}, "birth_date"),
        ({"birth_date": "12/10/1980"}, "birth_date"),
        ({"birth_date": 315532800}, "birth_date"),
        ({"sex": "unknownish"}, "sex"),
        ({"sex": None}, "sex"),
        ({"ward": ""}, "ward"),
        ({"bed": ""}, "bed"),
        ({"mrn": "m" * 33}, "mrn"),
        ({"status": "admitted"}, "status"),
        ({"nickname": "Ada"}, "nickname"),
    ],
)
async def test_invalid_registrations_are_refused_with_the_field_named(
    client: httpx.AsyncClient, overrides: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/patients", json=patient_body(**overrides))
    body = assert_problem(response, 422)
    assert field in [e["field"] for e in body["errors"]]
    assert await count(client) == 0


async def test_missing_fields_are_each_named(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/api/patients", json={}), 422)
    assert {e["field"] for e in body["errors"]} == {
        "given_name",
        "family_name",
        "birth_date",
        "sex",
        "ward",
    }


@pytest.mark.parametrize("payload", [b"{", b"not json", b'{"given_name": "A",}'])
async def test_malformed_json_is_a_400(client: httpx.AsyncClient, payload: bytes) -> None:
    response = await client.post(
        "/api/patients", content=payload, headers={"content-type": "application/json"}
    )
    assert_problem(response, 400)
    assert await count(client) == 0


@pytest.mark.parametrize("payload", [b"[]", b'"text"', b"null", b"42"])
async def test_json_that_is_not_an_object_is_a_422(
    client: httpx.AsyncClient, payload: bytes
) -> None:
    response = await client.post(
        "/api/patients", content=payload, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


async def test_an_oversized_body_is_a_413_and_changes_nothing(client: httpx.AsyncClient) -> None:
    big = patient_body(given_name="A" * (1024 * 1024 + 1))
    response = await client.post("/api/patients", json=big)
    assert_problem(response, 413)
    assert await count(client) == 0


async def test_an_oversized_streamed_body_without_length_is_a_413(
    client: httpx.AsyncClient,
) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 65536

    response = await client.post(
        "/api/patients", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)


# --- reading --------------------------------------------------------------------------------


async def test_unknown_patient_is_a_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"/api/patients/{uuid4()}"), 404)


@pytest.mark.parametrize("bad", ["123", "not-a-uuid", "' OR 1=1 --"])
async def test_a_non_uuid_id_is_a_422(client: httpx.AsyncClient, bad: str) -> None:
    body = assert_problem(await client.get(f"/api/patients/{bad}"), 422)
    assert body["errors"][0]["field"] == "patient_id"


async def test_listing_pages_through_every_patient_once_in_order(
    client: httpx.AsyncClient,
) -> None:
    ids = [(await register(client, given_name=f"P{i}"))["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/patients", params=params)).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


async def test_listing_filters_by_status_and_ward(client: httpx.AsyncClient) -> None:
    icu = await register(client, ward="ICU")
    await register(client, ward="ED")
    await client.put(f"/api/patients/{icu['id']}/status", json={"status": "waiting"})
    waiting = (await client.get("/api/patients", params={"status": "waiting"})).json()
    assert [p["id"] for p in waiting["items"]] == [icu["id"]]
    ed = (await client.get("/api/patients", params={"ward": "ED"})).json()
    assert [p["ward"] for p in ed["items"]] == ["ED"]
    both = (await client.get("/api/patients", params={"ward": "ED", "status": "waiting"})).json()
    assert both == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "asleep"}, "status"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "AAAA"}, "cursor"),
    ],
)
async def test_bad_list_parameters_are_refused(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/api/patients", params=params)
    assert response.status_code in (400, 422)
    body = assert_problem(response, response.status_code)
    assert field in [e["field"] for e in body["errors"]]


# --- moving through the stay ---------------------------------------------------------------


async def test_status_change_moves_the_patient_and_bumps_the_version(
    client: httpx.AsyncClient,
) -> None:
    patient = await register(client)
    response = await client.put(
        f"/api/patients/{patient['id']}/status", json={"status": "waiting", "reason": "triage"}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "waiting" and response.json()["version"] == 2


async def test_a_refused_transition_is_a_409_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    patient = await register(client)
    pid = patient["id"]
    await client.put(f"/api/patients/{pid}/status", json={"status": "discharged"})
    response = await client.put(f"/api/patients/{pid}/status", json={"status": "admitted"})
    body = assert_problem(response, 409)
    assert "discharged" in body["detail"]
    after = (await client.get(f"/api/patients/{pid}")).json()
    assert after["status"] == "discharged" and after["version"] == 2
    history = (await client.get(f"/api/patients/{pid}/events")).json()["items"]
    assert len(history) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"status": "asleep"},
        {},
        {"status": "waiting", "reason": "r" * 501},
        {"status": "waiting", "extra": 1},
        {"status": 3},
    ],
)
async def test_bad_status_bodies_are_refused(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    patient = await register(client)
    response = await client.put(f"/api/patients/{patient['id']}/status", json=body)
    assert_problem(response, 422)
    assert (await client.get(f"/api/patients/{patient['id']}")).json()["version"] == 1


async def test_status_change_of_an_unknown_patient_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.put(f"/api/patients/{uuid4()}/status", json={"status": "waiting"})
    assert_problem(response, 404)


async def test_mark_critical_moves_into_critical_once(client: httpx.AsyncClient) -> None:
    patient = await register(client)
    url = f"/api/patients/{patient['id']}/critical"
    body = {"reason": "NEWS2 7", "source": "monitor-3"}
    first = await client.post(url, json=body)
    second = await client.post(url, json=body)
    assert first.status_code == second.status_code == 200
    assert first.json()["status"] == "critical"
    assert second.json()["version"] == first.json()["version"] == 2
    history = (await client.get(f"/api/patients/{patient['id']}/events")).json()["items"]
    assert [e["type"] for e in history] == ["PatientCreated", "PatientCritical"]
    assert history[1]["data"]["reason"] == "NEWS2 7"
    assert history[1]["data"]["source"] == "monitor-3"


async def test_mark_critical_for_an_alert_moves_the_patient_once_per_alert(
    client: httpx.AsyncClient,
) -> None:
    patient = await register(client)
    url = f"/api/patients/{patient['id']}/critical"
    alert, later_alert = str(uuid4()), str(uuid4())
    body = {"reason": "NEWS2 9 (high risk)", "source": "news2", "alert_id": alert}
    first = await client.post(url, json=body)
    # a clinician moves the patient on; a redelivered reading of the same alert must not undo it
    await client.put(f"/api/patients/{patient['id']}/status", json={"status": "admitted"})
    repeated = await client.post(url, json=body)
    # a new episode (a new alert) does move the patient again
    again = await client.post(url, json={**body, "alert_id": later_alert})

    assert first.json()["status"] == "critical"
    assert repeated.status_code == 200
    assert repeated.json()["status"] == "admitted"
    assert again.json()["status"] == "critical"
    history = (await client.get(f"/api/patients/{patient['id']}/events")).json()["items"]
    criticals = [e["data"]["alert_id"] for e in history if e["type"] == "PatientCritical"]
    assert criticals == [alert, later_alert]


async def test_mark_critical_refuses_an_alert_id_that_is_no_uuid(
    client: httpx.AsyncClient,
) -> None:
    patient = await register(client)
    response = await client.post(
        f"/api/patients/{patient['id']}/critical",
        json={"reason": "r", "source": "s", "alert_id": "not-a-uuid"},
    )
    assert_problem(response, 422)
    assert (await client.get(f"/api/patients/{patient['id']}")).json()["status"] == "registered"


@pytest.mark.parametrize(
    "body",
    [{"reason": "r"}, {"source": "s"}, {"reason": "", "source": "s"}, {"reason": 1, "source": "s"}],
)
async def test_mark_critical_needs_a_reason_and_a_source(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    patient = await register(client)
    assert_problem(await client.post(f"/api/patients/{patient['id']}/critical", json=body), 422)


async def test_a_discharged_patient_cannot_be_marked_critical(client: httpx.AsyncClient) -> None:
    patient = await register(client)
    await client.put(f"/api/patients/{patient['id']}/status", json={"status": "discharged"})
    response = await client.post(
        f"/api/patients/{patient['id']}/critical", json={"reason": "r", "source": "s"}
    )
    assert_problem(response, 409)


async def test_history_lists_every_event_oldest_first(client: httpx.AsyncClient) -> None:
    patient = await register(client)
    pid = patient["id"]
    for status in ("waiting", "in_treatment", "admitted"):
        await client.put(f"/api/patients/{pid}/status", json={"status": status})
    items = (await client.get(f"/api/patients/{pid}/events")).json()["items"]
    assert [e["type"] for e in items] == ["PatientCreated"] + ["PatientStatusUpdated"] * 3
    assert [e["data"]["version"] for e in items] == [1, 2, 3, 4]
    assert all(e["subject"] == pid and e["specversion"] == "1.0" for e in items)


async def test_history_of_an_unknown_patient_is_a_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"/api/patients/{uuid4()}/events"), 404)


# --- the HTTP edge --------------------------------------------------------------------------


async def test_unknown_routes_and_methods_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/nothing-here"), 404)
    assert_problem(await client.delete("/api/patients"), 405)


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert len((await client.get("/health")).headers["x-request-id"]) == 32
