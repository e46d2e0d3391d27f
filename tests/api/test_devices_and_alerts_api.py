"""Device registration and binding, vitals and NEWS2 queries, alert listing and acknowledgement."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.conftest import eventually, patient_body
from tests.telemetry_support import CRITICAL, NORMAL, admit_with_device, at, post_readings

PROBLEM = "application/problem+json"


async def test_registration_returns_the_key_once_and_never_again(client: httpx.AsyncClient) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
    response = await client.post(
        "/api/devices", json={"device_id": "mon-1", "patient_id": patient_id, "kind": "monitor"}
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"device_id", "patient_id", "kind", "key"}
    assert response.headers["location"] == "/api/devices/mon-1"
    assert response.headers["cache-control"] == "no-store"
    shown = await client.get("/api/devices/mon-1")
    assert shown.status_code == 200
    assert "key" not in shown.json()
    assert body["key"] not in shown.text
    listed = await client.get(f"/api/devices?patient_id={patient_id}")
    assert [d["device_id"] for d in listed.json()["items"]] == ["mon-1"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"device_id": "mon-1", "kind": "monitor"}, 422),
        ({"device_id": "mon-1", "patient_id": "not-a-uuid", "kind": "monitor"}, 422),
        ({"device_id": "a/b", "patient_id": "{patient}", "kind": "monitor"}, 422),
        ({"device_id": "", "patient_id": "{patient}", "kind": "monitor"}, 422),
        ({"device_id": "mon-1", "patient_id": "{patient}", "kind": ""}, 422),
        ({"device_id": "mon-1", "patient_id": "{patient}", "kind": "   "}, 422),
        ({"device_id": "mon-1", "patient_id": "{patient}", "kind": "m", "key": "mine"}, 422),
        ({"device_id": "mon-1", "patient_id": str(uuid4()), "kind": "monitor"}, 404),
    ],
)
async def test_bad_registrations_are_refused_and_register_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], status: int
) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
    body = {k: (patient_id if v == "{patient}" else v) for k, v in body.items()}
    response = await client.post("/api/devices", json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    assert (await client.get("/api/devices")).json()["items"] == []


async def test_a_device_id_can_be_registered_once(client: httpx.AsyncClient) -> None:
    patient_id, key = await admit_with_device(client)
    again = await client.post(
        "/api/devices", json={"device_id": "mon-1", "patient_id": patient_id, "kind": "other"}
    )
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/device-taken"
    # the first key still works: nothing was replaced
    posted = await post_readings(client, "mon-1", key, [{"ts": at(0), **NORMAL}])
    assert posted.status_code == 202


async def test_unbinding_and_rebinding_move_the_readings_to_the_new_patient(
    client: httpx.AsyncClient,
) -> None:
    first, key = await admit_with_device(client)
    second = (await client.post("/api/patients", json=patient_body(ward="A&E"))).json()["id"]
    unbound = await client.delete("/api/devices/mon-1/binding")
    assert unbound.json()["patient_id"] is None
    rebound = await client.put("/api/devices/mon-1/binding", json={"patient_id": second})
    assert rebound.status_code == 200
    assert rebound.json()["patient_id"] == second
    await post_readings(client, "mon-1", key, [{"ts": at(0), **NORMAL}])

    async def arrived() -> bool:
        items = (await client.get(f"/api/patients/{second}/vitals")).json()["items"]
        return len(items) == 1

    await eventually(arrived)
    assert (await client.get(f"/api/patients/{first}/vitals")).json()["items"] == []


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/devices/nobody", None, 404),
        ("DELETE", "/api/devices/nobody/binding", None, 404),
        ("PUT", "/api/devices/nobody/binding", {"patient_id": "{patient}"}, 404),
        ("PUT", "/api/devices/mon-1/binding", {"patient_id": str(uuid4())}, 404),
        ("PUT", "/api/devices/mon-1/binding", {}, 422),
        ("GET", "/api/devices?limit=0", None, 422),
        ("GET", "/api/quarantine?limit=501", None, 422),
        ("GET", "/api/quarantine?before=nope", None, 422),
        ("GET", "/api/quarantine?device_id=a%2Fb", None, 422),
    ],
)
async def test_device_error_paths(
    client: httpx.AsyncClient, method: str, path: str, body: Any, status: int
) -> None:
    patient_id, _ = await admit_with_device(client)
    if isinstance(body, dict):
        body = {k: (patient_id if v == "{patient}" else v) for k, v in body.items()}
    response = await client.request(method, path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    device = (await client.get("/api/devices/mon-1")).json()
    assert device["patient_id"] == patient_id


async def test_news2_is_404_before_the_first_reading(client: httpx.AsyncClient) -> None:
    patient_id, _ = await admit_with_device(client)
    response = await client.get(f"/api/patients/{patient_id}/news2")
    assert response.status_code == 404
    assert response.json()["type"] == "/problems/no-assessment"


async def test_a_patient_without_readings_is_told_apart_from_an_unknown_one(
    client: httpx.AsyncClient,
) -> None:
    patient_id, _ = await admit_with_device(client)
    unknown = uuid4()
    assert (await client.get(f"/api/patients/{patient_id}/vitals")).json()["items"] == []
    for path in (f"/api/patients/{unknown}/vitals", f"/api/patients/{unknown}/news2"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["type"] == "/problems/patient-not-found"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/patients/{unknown}/news2", 404),
        ("/api/patients/{unknown}/vitals", 404),
        ("/api/patients/not-a-uuid/vitals", 422),
        ("/api/patients/{patient}/vitals?limit=1001", 422),
        ("/api/patients/{patient}/vitals?since=yesterday", 422),
        ("/api/patients/{patient}/vitals?since=2026-11-25T09:00:00", 422),
        ("/api/alerts?status=closed", 422),
        ("/api/alerts?severity=mild", 422),
        ("/api/alerts?limit=0", 422),
        ("/api/alerts?ward=", 422),
        ("/api/patients/{patient}/vitals?every=0", 422),
        ("/api/patients/{patient}/vitals?every=86401", 422),
        ("/api/patients/{patient}/vitals?every=soon", 422),
        ("/api/news2?limit=0", 422),
        ("/api/news2?limit=1001", 422),
        ("/api/news2?after=nope", 422),
        ("/api/news2?ward=", 422),
        ("/api/news2?ward=" + "w" * 51, 422),
    ],
)
async def test_query_error_paths(client: httpx.AsyncClient, path: str, status: int) -> None:
    patient_id, _ = await admit_with_device(client)
    response = await client.get(path.format(unknown=uuid4(), patient=patient_id))
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM


async def test_vitals_since_returns_the_readings_from_then_on_oldest_first(
    client: httpx.AsyncClient,
) -> None:
    patient_id, key = await admit_with_device(client)
    await post_readings(client, "mon-1", key, [{"ts": at(i), **NORMAL} for i in range(5)])

    async def all_stored() -> bool:
        return len((await client.get(f"/api/patients/{patient_id}/vitals")).json()["items"]) == 5

    await eventually(all_stored)
    since = at(2).replace("+00:00", "Z")
    items = (
        await client.get(f"/api/patients/{patient_id}/vitals", params={"since": since, "limit": 2})
    ).json()["items"]
    assert [i["ts"] for i in items] == [at(2).replace("+00:00", "Z"), at(3).replace("+00:00", "Z")]
    latest = (await client.get(f"/api/patients/{patient_id}/vitals?limit=2")).json()["items"]
    assert [i["ts"] for i in latest] == [at(3).replace("+00:00", "Z"), at(4).replace("+00:00", "Z")]


async def test_vitals_every_keeps_the_newest_reading_of_each_slice(
    client: httpx.AsyncClient,
) -> None:
    patient_id, key = await admit_with_device(client)
    # BASE is on a whole second; ten readings a second apart fall in at most three 5 s slices
    await post_readings(client, "mon-1", key, [{"ts": at(i), **NORMAL} for i in range(10)])

    async def all_stored() -> bool:
        got = (await client.get(f"/api/patients/{patient_id}/vitals?limit=20")).json()["items"]
        return len(got) == 10

    await eventually(all_stored)
    items = (
        await client.get(f"/api/patients/{patient_id}/vitals", params={"every": 5, "limit": 20})
    ).json()["items"]
    assert 2 <= len(items) <= 3
    assert items[-1]["ts"] == at(9).replace("+00:00", "Z")
    stamps = [i["ts"] for i in items]
    assert stamps == sorted(stamps)
    assert all(i["news2"]["total"] == 0 for i in items)


async def test_latest_news2_lists_every_monitored_patient_once_by_ward_in_pages(
    client: httpx.AsyncClient,
) -> None:
    icu, icu_key = await admit_with_device(client, "mon-1", ward="ICU")
    other, other_key = await admit_with_device(client, "mon-2", ward="Maternity")
    unmonitored = (await client.post("/api/patients", json=patient_body(ward="ICU"))).json()["id"]
    await post_readings(client, "mon-1", icu_key, [{"ts": at(0), **NORMAL}])
    await post_readings(client, "mon-2", other_key, [{"ts": at(0), **CRITICAL}])

    async def both_scored() -> bool:
        return len((await client.get("/api/news2")).json()["items"]) == 2

    await eventually(both_scored)
    page = (await client.get("/api/news2")).json()
    assert page["next_after"] is None
    by_patient = {item["patient_id"]: item for item in page["items"]}
    assert set(by_patient) == {icu, other}
    assert unmonitored not in by_patient
    assert (by_patient[icu]["ward"], by_patient[icu]["total"], by_patient[icu]["risk"]) == (
        "ICU",
        0,
        "low",
    )
    assert by_patient[other]["risk"] == "high"
    assert by_patient[other] | {"patient_id": other, "ward": "Maternity"} == {
        **(await client.get(f"/api/patients/{other}/news2")).json(),
        "patient_id": other,
        "ward": "Maternity",
    }
    maternity = (await client.get("/api/news2?ward=Maternity")).json()["items"]
    assert [i["patient_id"] for i in maternity] == [other]
    first = (await client.get("/api/news2?limit=1")).json()
    rest = (await client.get(f"/api/news2?limit=1&after={first['next_after']}")).json()
    assert [i["patient_id"] for i in first["items"] + rest["items"]] == sorted([icu, other])


async def raise_critical_alert(client: httpx.AsyncClient) -> tuple[str, str, dict[str, Any]]:
    patient_id, key = await admit_with_device(client)
    await post_readings(client, "mon-1", key, [{"ts": at(0), **CRITICAL}])

    async def raised() -> bool:
        return len((await client.get("/api/alerts")).json()["items"]) == 1

    await eventually(raised)
    alert: dict[str, Any] = (await client.get("/api/alerts")).json()["items"][0]
    return patient_id, key, alert


async def test_acknowledging_records_who_and_keeps_the_first(client: httpx.AsyncClient) -> None:
    _, _, alert = await raise_critical_alert(client)
    acked = await client.post(f"/api/alerts/{alert['id']}/ack", json={"by": "dr.osei"})
    assert acked.status_code == 200
    assert (acked.json()["status"], acked.json()["acknowledged_by"]) == ("acknowledged", "dr.osei")
    assert acked.json()["acknowledged_at"] is not None
    assert acked.json()["version"] == alert["version"] + 1
    again = await client.post(f"/api/alerts/{alert['id']}/ack", json={"by": "someone.else"})
    assert again.json()["acknowledged_by"] == "dr.osei"
    listed = (await client.get("/api/alerts?status=acknowledged&severity=critical&ward=ICU")).json()
    assert [a["id"] for a in listed["items"]] == [alert["id"]]
    assert (await client.get("/api/alerts?ward=Maternity")).json()["items"] == []
    assert (await client.get("/api/alerts?status=open")).json()["items"] == []


@pytest.mark.parametrize(
    ("alert_id", "body", "status"),
    [
        ("{unknown}", {"by": "dr.osei"}, 404),
        ("not-a-uuid", {"by": "dr.osei"}, 422),
        ("{alert}", {}, 422),
        ("{alert}", {"by": ""}, 422),
        ("{alert}", {"by": "x" * 101}, 422),
        ("{alert}", {"by": "dr.osei", "note": "x"}, 422),
    ],
)
async def test_bad_acknowledgements_are_refused_and_change_nothing(
    client: httpx.AsyncClient, alert_id: str, body: dict[str, Any], status: int
) -> None:
    _, _, alert = await raise_critical_alert(client)
    path = f"/api/alerts/{alert_id.format(unknown=uuid4(), alert=alert['id'])}/ack"
    response = await client.post(path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    assert (await client.get("/api/alerts")).json()["items"][0]["status"] == "open"


async def test_a_resolved_alert_cannot_be_acknowledged(client: httpx.AsyncClient) -> None:
    patient_id, key, alert = await raise_critical_alert(client)
    await post_readings(client, "mon-1", key, [{"ts": at(i), **NORMAL} for i in range(1, 4)])

    async def resolved() -> bool:
        found = (await client.get("/api/alerts?status=resolved")).json()["items"]
        return len(found) == 1

    await eventually(resolved)
    response = await client.post(f"/api/alerts/{alert['id']}/ack", json={"by": "dr.osei"})
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/alert-resolved"
    assert (await client.get(f"/api/alerts?patient_id={patient_id}")).json()["items"][0][
        "acknowledged_by"
    ] is None


async def test_no_device_can_be_bound_to_a_discharged_patient(client: httpx.AsyncClient) -> None:
    patient_id, _ = await admit_with_device(client)
    gone = (await client.post("/api/patients", json=patient_body())).json()["id"]
    await client.put(f"/api/patients/{gone}/status", json={"status": "discharged"})
    registered = await client.post(
        "/api/devices", json={"device_id": "mon-2", "patient_id": gone, "kind": "monitor"}
    )
    rebound = await client.put("/api/devices/mon-1/binding", json={"patient_id": gone})
    assert (registered.status_code, rebound.status_code) == (409, 409)
    assert registered.json()["type"] == "/problems/patient-discharged"
    assert (await client.get("/api/devices/mon-2")).status_code == 404
    assert (await client.get("/api/devices/mon-1")).json()["patient_id"] == patient_id


async def test_readiness_reports_the_telemetry_backlog(client: httpx.AsyncClient) -> None:
    report = (await client.get("/health/ready")).json()
    assert report["checks"]["telemetry_intake"]["status"] == "up"
    assert report["checks"]["telemetry_intake"]["backlog"] == 0
