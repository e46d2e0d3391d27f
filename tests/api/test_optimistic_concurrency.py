"""ETag / If-Match on patient status changes: a stale write gets 412 and changes nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import patient_body


async def _patient(client: httpx.AsyncClient) -> str:
    return str((await client.post("/api/patients", json=patient_body())).json()["id"])


async def test_reads_carry_the_version_as_etag(client: httpx.AsyncClient) -> None:
    patient_id = await _patient(client)
    assert (await client.get(f"/api/patients/{patient_id}")).headers["etag"] == '"1"'


async def test_a_write_with_the_current_etag_succeeds_and_returns_the_next(
    client: httpx.AsyncClient,
) -> None:
    patient_id = await _patient(client)
    moved = await client.put(
        f"/api/patients/{patient_id}/status",
        json={"status": "waiting"},
        headers={"If-Match": '"1"'},
    )
    assert moved.status_code == 200
    assert moved.headers["etag"] == '"2"'


async def test_a_stale_write_gets_412_and_changes_nothing(client: httpx.AsyncClient) -> None:
    patient_id = await _patient(client)
    await client.put(f"/api/patients/{patient_id}/status", json={"status": "waiting"})
    stale = await client.put(
        f"/api/patients/{patient_id}/status",
        json={"status": "in_treatment"},
        headers={"If-Match": '"1"'},
    )
    assert stale.status_code == 412
    assert stale.json()["type"] == "/problems/precondition-failed"
    current = (await client.get(f"/api/patients/{patient_id}")).json()
    assert (current["status"], current["version"]) == ("waiting", 2)


@pytest.mark.parametrize("tag", ["abc", '"x1"', '""'])
async def test_a_malformed_if_match_is_400(client: httpx.AsyncClient, tag: str) -> None:
    patient_id = await _patient(client)
    response = await client.put(
        f"/api/patients/{patient_id}/status", json={"status": "waiting"}, headers={"If-Match": tag}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
