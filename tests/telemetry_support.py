"""Helpers the telemetry tests share: patients with devices, readings, waiting for the worker."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import eventually, patient_body

BROKER = ("127.0.0.1", 1883)


def broker_up() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=1):
            return True
    except OSError:
        return False


# skipped when Mosquitto is down, except under HEALTHFLOW_REQUIRE_SERVICES=1 (CI): there they fail
needs_broker = pytest.mark.skipif(
    not broker_up() and os.environ.get("HEALTHFLOW_REQUIRE_SERVICES") != "1",
    reason="Mosquitto is not answering on 127.0.0.1:1883",
)

NORMAL: dict[str, Any] = {
    "heart_rate": 72,
    "resp_rate": 16,
    "spo2": 98,
    "systolic_bp": 124,
    "diastolic_bp": 78,
    "temperature": 36.8,
    "consciousness": "A",
    "on_oxygen": False,
}
# NEWS2 5 (medium): resp 21-24 → 2, SpO2 94-95 → 1, pulse 91-110 → 1, temperature 38.1-39 → 1
WORRYING: dict[str, Any] = {
    **NORMAL,
    "resp_rate": 22,
    "spo2": 95,
    "heart_rate": 100,
    "temperature": 38.5,
}
# NEWS2 high: every parameter in its worst band
CRITICAL: dict[str, Any] = {
    "heart_rate": 140,
    "resp_rate": 28,
    "spo2": 88,
    "systolic_bp": 85,
    "diastolic_bp": 50,
    "temperature": 39.5,
    "consciousness": "V",
    "on_oxygen": True,
}


# One base for the whole run, so at(n) names the same instant every time it is called.
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)


def at(second: int) -> str:
    """An ISO timestamp `second` seconds after the run's base (half an hour ago)."""
    return (BASE + timedelta(seconds=second)).isoformat()


async def admit_with_device(
    client: httpx.AsyncClient, device_id: str = "mon-1", ward: str = "ICU"
) -> tuple[str, str]:
    """Register a patient and a device bound to them; return (patient_id, device key)."""
    created = await client.post("/api/patients", json=patient_body(ward=ward))
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    device = await client.post(
        "/api/devices", json={"device_id": device_id, "patient_id": patient_id, "kind": "monitor"}
    )
    assert device.status_code == 201, device.text
    return patient_id, device.json()["key"]


async def post_readings(
    client: httpx.AsyncClient, device_id: str, key: str, readings: list[dict[str, Any]]
) -> httpx.Response:
    return await client.post(
        f"/api/devices/{device_id}/telemetry",
        json={"readings": readings},
        headers={"X-Device-Key": key},
    )


async def wait_for_vitals(client: httpx.AsyncClient, patient_id: str, count: int) -> list[Any]:
    async def stored() -> bool:
        body = (await client.get(f"/api/patients/{patient_id}/vitals?limit=1000")).json()
        return len(body["items"]) >= count

    await eventually(stored)
    items: list[Any] = (await client.get(f"/api/patients/{patient_id}/vitals?limit=1000")).json()[
        "items"
    ]
    return items
