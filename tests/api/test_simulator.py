"""The simulator against the ASGI app over HTTP: everything sent is acknowledged, and the
deteriorating patient ends with one critical alert."""

from __future__ import annotations

import httpx

from healthflow.vitals import simulator
from tests.conftest import eventually


async def test_simulated_deterioration_over_http_raises_one_critical_alert(
    client: httpx.AsyncClient,
) -> None:
    fleet = await simulator.register(
        client, devices=3, deteriorate=1, duration_s=3, ramp_s=0.5, ward="SIM", seed=42
    )
    summary = await simulator.stream(fleet, simulator.HttpSender(client), rate=10, duration_s=3)
    assert summary.sent == summary.acknowledged > 0
    assert summary.refused == 0
    [sick] = summary.deteriorating

    async def critical() -> bool:
        patient = (await client.get(f"/api/patients/{sick}")).json()
        return bool(patient["status"] == "critical")

    await eventually(critical)
    alerts = (await client.get("/api/alerts?ward=SIM")).json()["items"]
    assert [(a["patient_id"], a["severity"]) for a in alerts] == [(sick, "critical")]
    for device in fleet:
        if device.patient_id != sick:
            status = (await client.get(f"/api/patients/{device.patient_id}")).json()["status"]
            assert status == "registered"
