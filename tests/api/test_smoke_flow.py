"""The core flow through the ASGI app: register, move, and see it in the read model."""

from __future__ import annotations

import httpx

from tests.conftest import eventually, patient_body


async def test_registration_and_status_change_reach_the_dashboard(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post("/api/patients", json=patient_body())
    assert created.status_code == 201
    patient_id = created.json()["id"]
    moved = await client.put(
        f"/api/patients/{patient_id}/status", json={"status": "in_treatment", "reason": "triaged"}
    )
    assert moved.status_code == 200

    async def processed_both() -> bool:
        summary = (await client.get("/api/analytics/dashboard")).json()
        return bool(summary["events_processed_total"] == 2)

    await eventually(processed_both)
    summary = (await client.get("/api/analytics/dashboard")).json()
    assert summary["patients_total"] == 1
    assert summary["patients_by_status"]["in_treatment"] == 1
