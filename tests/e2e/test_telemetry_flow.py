"""Telemetry end to end through the ASGI app: HTTP readings → worker → NEWS2 → one alert →
patient critical → live push; recovery resolves the alert; accepted readings survive a crash."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from healthflow.app import build_app
from healthflow.settings import Settings
from tests.conftest import auth_headers, eventually, subscribe
from tests.telemetry_support import (
    CRITICAL,
    NORMAL,
    WORRYING,
    admit_with_device,
    at,
    post_readings,
    wait_for_vitals,
)


async def receive_until(ws: Any, wanted: set[str], seen: list[dict[str, Any]]) -> None:
    """Collect live messages until every wanted type has arrived."""
    async with asyncio.timeout(15):
        while not wanted <= {m["type"] for m in seen}:
            seen.append(orjson.loads(await ws.receive_text()))


async def test_deterioration_raises_one_critical_alert_and_recovery_resolves_it(
    settings: Settings,
) -> None:
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGIWebSocketTransport(app=app)
        async with (
            httpx.AsyncClient(
                transport=transport, base_url="http://testserver", headers=auth_headers(app)
            ) as client,
            aconnect_ws("http://testserver/ws", client) as ws,
        ):
            patient_id, key = await admit_with_device(client)
            await subscribe(
                ws.send_text, ws.receive_text, ["patients", "alerts", f"patient:{patient_id}"]
            )
            seen: list[dict[str, Any]] = []

            # baseline: vitals flow, no alert
            await post_readings(client, "mon-1", key, [{"ts": at(i), **NORMAL} for i in range(3)])
            await wait_for_vitals(client, patient_id, 3)
            assert (await client.get("/api/alerts")).json()["items"] == []

            # getting worse: one urgent alert
            await post_readings(
                client, "mon-1", key, [{"ts": at(i), **WORRYING} for i in range(3, 5)]
            )
            await receive_until(ws, {"VitalsUpdated", "AlertRaised"}, seen)
            [urgent] = (await client.get("/api/alerts")).json()["items"]
            assert (urgent["severity"], urgent["status"]) == ("urgent", "open")

            # much worse, reading after reading: the same alert escalates, once
            await post_readings(
                client, "mon-1", key, [{"ts": at(i), **CRITICAL} for i in range(5, 15)]
            )
            await receive_until(ws, {"PatientCritical", "AlertUpdated"}, seen)
            await wait_for_vitals(client, patient_id, 15)
            [critical] = (await client.get("/api/alerts")).json()["items"]
            assert critical["id"] == urgent["id"]
            assert (critical["severity"], critical["status"], critical["readings"]) == (
                "critical",
                "open",
                12,
            )
            patient = (await client.get(f"/api/patients/{patient_id}")).json()
            assert patient["status"] == "critical"
            news2 = (await client.get(f"/api/patients/{patient_id}/news2")).json()
            assert news2["risk"] == "high"
            criticals = [m for m in seen if m["type"] == "PatientCritical"]
            assert [m["data"]["patient_id"] for m in criticals] == [patient_id]
            assert criticals[0]["data"]["source"] == "news2"
            escalations = [m for m in seen if m["type"] == "AlertUpdated"]
            assert [m["data"]["change"] for m in escalations] == ["escalated"]
            assert len([m for m in seen if m["type"] == "AlertRaised"]) == 1

            # a clinician acknowledges, the patient recovers: resolved after 3 calm readings
            ack = await client.post(f"/api/alerts/{critical['id']}/ack", json={"by": "dr.osei"})
            assert ack.status_code == 200
            await post_readings(
                client, "mon-1", key, [{"ts": at(i), **NORMAL} for i in range(15, 18)]
            )

            async def resolved() -> bool:
                items = (await client.get("/api/alerts")).json()["items"]
                return bool(items[0]["status"] == "resolved")

            await eventually(resolved)
            [done] = (await client.get("/api/alerts")).json()["items"]
            assert done["acknowledged_by"] == "dr.osei"
            assert done["peak_score"] == 19
            summary = (await client.get("/api/analytics/dashboard")).json()
            assert summary["critical_now"] == 1


async def test_a_patient_discharged_while_monitored_keeps_the_alert_but_not_critical(
    client: httpx.AsyncClient,
) -> None:
    patient_id, key = await admit_with_device(client)
    moved = await client.put(f"/api/patients/{patient_id}/status", json={"status": "discharged"})
    assert moved.status_code == 200
    await post_readings(client, "mon-1", key, [{"ts": at(0), **CRITICAL}])
    await wait_for_vitals(client, patient_id, 1)
    [alert] = (await client.get("/api/alerts")).json()["items"]
    assert alert["severity"] == "critical"
    assert (await client.get(f"/api/patients/{patient_id}")).json()["status"] == "discharged"


async def test_readings_accepted_before_a_crash_are_handled_after_restart(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    first = build_app(settings)
    async with first.router.lifespan_context(first):
        # the process "dies" before its relay hands the readings to the workers
        for task in first.state.platform._tasks:
            if task.get_name() == "telemetry-relay":
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        transport = httpx.ASGITransport(app=first)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=auth_headers(first)
        ) as client:
            patient_id, key = await admit_with_device(client)
            posted = await post_readings(
                client, "mon-1", key, [{"ts": at(i), **CRITICAL} for i in range(4)]
            )
            assert posted.json()["accepted"] == 4
            assert (await client.get(f"/api/patients/{patient_id}/vitals")).json()["items"] == []

    second = build_app(settings)
    async with second.router.lifespan_context(second):
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=auth_headers(second)
        ) as client:
            await wait_for_vitals(client, patient_id, 4)
            [alert] = (await client.get("/api/alerts")).json()["items"]
            assert (alert["severity"], alert["readings"]) == ("critical", 4)

            async def critical() -> bool:
                patient = (await client.get(f"/api/patients/{patient_id}")).json()
                return bool(patient["status"] == "critical")

            await eventually(critical)
