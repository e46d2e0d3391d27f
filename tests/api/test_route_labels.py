"""Routes are known by their full declared path (audit actions, metrics labels, the table)."""

from __future__ import annotations

import httpx

from tests.conftest import patient_body


async def test_metrics_label_requests_by_the_full_route_template(
    client: httpx.AsyncClient,
) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
    await client.get(f"/api/patients/{patient_id}")
    metrics = (await client.get("/metrics")).text
    assert 'route="/api/patients/{patient_id}"' in metrics
    assert patient_id not in metrics
