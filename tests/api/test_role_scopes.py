"""What each role reaches inside the routes it may call: nurse wards, analyst de-identified."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi import FastAPI

from healthflow.security.rbac import PERMISSIONS, Role
from tests.conftest import eventually, patient_body

PLANTED = {
    "given_name": "Philomena",
    "family_name": "Cunk",
    "birth_date": "1961-07-04",
    "mrn": "MRN-4242",
}


async def _register(client: httpx.AsyncClient, ward: str, **fields: str) -> str:
    created = await client.post("/api/patients", json=patient_body(ward=ward, **fields))
    assert created.status_code == 201
    return str(created.json()["id"])


async def test_a_nurse_reads_and_moves_patients_of_her_ward_only(
    client: httpx.AsyncClient, make_client: Callable[..., httpx.AsyncClient]
) -> None:
    in_a = await _register(client, "A")
    in_b = await _register(client, "B")
    nurse = make_client("nurse", ward="A")

    assert (await nurse.get(f"/api/patients/{in_a}")).status_code == 200
    assert (await nurse.get(f"/api/patients/{in_a}/events")).status_code == 200
    moved = await nurse.put(f"/api/patients/{in_a}/status", json={"status": "waiting"})
    assert moved.status_code == 200

    assert (await nurse.get(f"/api/patients/{in_b}")).status_code == 403
    assert (await nurse.get(f"/api/patients/{in_b}/events")).status_code == 403
    refused = await nurse.put(f"/api/patients/{in_b}/status", json={"status": "waiting"})
    assert refused.status_code == 403
    critical = await nurse.post(
        f"/api/patients/{in_b}/critical", json={"reason": "r", "source": "s"}
    )
    assert critical.status_code == 403
    unchanged = (await client.get(f"/api/patients/{in_b}")).json()
    assert (unchanged["status"], unchanged["version"]) == ("registered", 1)


async def test_a_nurse_lists_her_own_ward_and_no_other(
    client: httpx.AsyncClient, make_client: Callable[..., httpx.AsyncClient]
) -> None:
    in_a = await _register(client, "A")
    await _register(client, "B")
    nurse = make_client("nurse", ward="A")
    own = await nurse.get("/api/patients", params={"ward": "A"})
    assert [p["id"] for p in own.json()["items"]] == [in_a]
    assert (await nurse.get("/api/patients", params={"ward": "B"})).status_code == 403
    unfiltered = await nurse.get("/api/patients")
    assert unfiltered.status_code == 403
    assert "ward=A" in unfiltered.json()["detail"]


async def test_a_ward_limited_nurse_lists_alerts_and_news2_of_her_ward_only(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    nurse = make_client("nurse", ward="A")
    assert (await nurse.get("/api/alerts", params={"ward": "A"})).status_code == 200
    assert (await nurse.get("/api/alerts", params={"ward": "B"})).status_code == 403
    assert (await nurse.get("/api/alerts")).status_code == 403
    assert (await nurse.get("/api/news2", params={"ward": "A"})).status_code == 200
    assert (await nurse.get("/api/news2", params={"ward": "B"})).status_code == 403
    assert (await nurse.get("/api/news2")).status_code == 403
    assert (await make_client("nurse").get("/api/alerts")).status_code == 200


async def test_a_nurse_without_a_ward_claim_is_not_ward_limited(
    client: httpx.AsyncClient, make_client: Callable[..., httpx.AsyncClient]
) -> None:
    in_b = await _register(client, "B")
    nurse = make_client("nurse")
    assert (await nurse.get(f"/api/patients/{in_b}")).status_code == 200
    assert len((await nurse.get("/api/patients")).json()["items"]) == 1


async def test_a_ward_limited_nurse_gets_404_for_a_patient_that_does_not_exist(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    nurse = make_client("nurse", ward="A")
    missing = await nurse.get("/api/patients/01900000-0000-7000-8000-000000000000")
    assert missing.status_code == 404


async def test_a_ward_claim_does_not_limit_a_clinician(
    client: httpx.AsyncClient, make_client: Callable[..., httpx.AsyncClient]
) -> None:
    in_b = await _register(client, "B")
    clinician = make_client("clinician", ward="A")
    assert (await clinician.get(f"/api/patients/{in_b}")).status_code == 200


async def test_the_analyst_never_sees_names_mrn_or_birth_dates(
    app: FastAPI, client: httpx.AsyncClient, make_client: Callable[..., httpx.AsyncClient]
) -> None:
    patient_id = await _register(client, "A", **PLANTED)
    await client.put(f"/api/patients/{patient_id}/status", json={"status": "waiting"})
    analyst = make_client("analyst")

    async def processed() -> bool:
        summary = (await analyst.get("/api/analytics/dashboard")).json()
        return bool(summary["events_processed_total"] == 2)

    await eventually(processed)
    reachable = [
        path
        for (method, path), rule in PERMISSIONS.items()
        if method == "GET" and Role.ANALYST in rule.roles and "{" not in path
    ]
    assert "/api/analytics/dashboard" in reachable
    for path in reachable:
        response = await analyst.get(path)
        assert response.status_code == 200
        for value in PLANTED.values():
            assert value not in response.text, (path, value)
    for path in (f"/api/patients/{patient_id}", "/api/patients", "/api/audit"):
        assert (await analyst.get(path)).status_code == 403
