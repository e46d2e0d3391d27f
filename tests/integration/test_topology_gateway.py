"""What the dashboard and operators use, through the gateway of the four-role topology: the page,
sign-in, the session, the live socket, the audit trail, and every route a service serves."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from healthflow import cluster
from healthflow.composition.served import SERVICE_ROUTERS
from healthflow.security.rbac import declared_routes
from healthflow.settings import Settings
from tests.conftest import dev_headers, patient_body, subscribe

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PAGE = "<!doctype html><title>HealthFlow through the gateway</title>"


@pytest.fixture
def topology_overrides(tmp_path: Path) -> dict[str, Any]:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text(PAGE)
    return {"web_dir": dist}


async def sign_in(client: httpx.AsyncClient, role: str) -> dict[str, str]:
    signed_in = await client.post("/api/dev/sign-in", json={"sub": f"gw-{role}", "role": role})
    assert signed_in.status_code == 200, signed_in.text
    return {"Authorization": f"Bearer {signed_in.json()['access_token']}"}


async def test_the_dashboard_loads_signs_in_and_goes_live_through_the_gateway(
    topology: dict[str, cluster.Child],
) -> None:
    entry = topology["gateway"].url
    async with httpx.AsyncClient(base_url=entry, timeout=10) as client:
        page = await client.get("/")
        config = await client.get("/api/auth/config")
        headers = await sign_in(client, "clinician")
        session = await client.get("/api/auth/session", headers=headers)
        token = headers["Authorization"].removeprefix("Bearer ")
        async with websockets.connect(
            entry.replace("http", "ws") + f"/ws?access_token={token}"
        ) as ws:
            await subscribe(ws.send, ws.recv, ["patients"])
            created = await client.post("/api/patients", json=patient_body(), headers=headers)
            async with asyncio.timeout(20):
                while (message := orjson.loads(await ws.recv()))["type"] != "PatientCreated":
                    pass

    assert page.status_code == 200
    assert page.text == PAGE
    assert config.status_code == 200
    assert config.json()["mode"] == "development"
    assert session.status_code == 200
    assert session.json()["subject"] == "gw-clinician"
    assert session.json()["roles"] == ["clinician"]
    # the services' table, not the gateway's: a clinician may not read the audit trail
    assert "POST /api/patients" in session.json()["permissions"]
    assert "GET /api/audit" not in session.json()["permissions"]
    assert message["data"]["patient_id"] == created.json()["id"]


async def test_an_admin_reads_the_audit_trail_through_the_gateway(
    topology: dict[str, cluster.Child],
) -> None:
    async with httpx.AsyncClient(base_url=topology["gateway"].url, timeout=10) as client:
        admin = await sign_in(client, "admin")
        created = await client.post("/api/patients", json=patient_body(), headers=admin)
        patient_id = created.json()["id"]
        read = await client.get(f"/api/patients/{patient_id}", headers=admin)
        trail = await client.get("/api/audit", params={"patient_id": patient_id}, headers=admin)
        nurse = await client.get("/api/audit", headers=await sign_in(client, "nurse"))
        anonymous = await client.get("/api/audit")

    assert read.status_code == 200
    assert trail.status_code == 200
    assert [(r["action"], r["subject"]) for r in trail.json()["items"]] == [
        ("patient.create", "gw-admin"),
        ("GET /api/patients/{patient_id}", "gw-admin"),
    ]
    assert nurse.status_code == 403
    assert anonymous.status_code == 401


def problem_type(answer: httpx.Response) -> str | None:
    if answer.headers.get("content-type") != "application/problem+json":
        return None
    kind: str = answer.json().get("type", "")
    return kind


async def test_every_route_a_service_serves_answers_alike_through_the_gateway(
    topology: dict[str, cluster.Child], topology_settings: Settings
) -> None:
    headers = dev_headers(topology_settings.data_dir)
    some_id = "01890000-0000-7000-8000-000000000001"
    differing = []
    async with httpx.AsyncClient(base_url=topology["gateway"].url, headers=headers) as gateway:
        for service, routers in SERVICE_ROUTERS.items():
            async with httpx.AsyncClient(base_url=topology[service].url, headers=headers) as direct:
                for router in routers:
                    for method, path in declared_routes(router):
                        # no valid body: nothing is changed, both answer the same refusal
                        concrete = re.sub(r"\{\w+\}", some_id, path)
                        body = None if method == "GET" else b"{}"
                        there = await direct.request(method, concrete, content=body)
                        here = await gateway.request(method, concrete, content=body)
                        if (here.status_code, problem_type(here)) != (
                            there.status_code,
                            problem_type(there),
                        ):
                            differing.append((method, path, here.status_code, there.status_code))
    assert differing == []
