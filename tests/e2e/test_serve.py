"""End to end against a real `healthflow serve` process: volume, crash recovery, live push."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import eventually, patient_body, subscribe
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e


async def dashboard(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/api/analytics/dashboard", params={"days": 1})
    body: dict[str, Any] = response.json()
    return body


async def all_patient_ids(http: httpx.AsyncClient) -> list[str]:
    ids: list[str] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        page = (await http.get("/api/patients", params=params)).json()
        ids += [p["id"] for p in page["items"]]
        if page["next_cursor"] is None:
            return ids
        params["cursor"] = page["next_cursor"]


def unpublished(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "patients.db") as db:
        return int(
            db.execute("SELECT count(*) FROM patient_events WHERE published_at IS NULL").fetchone()[
                0
            ]
        )


async def test_two_thousand_registrations_in_a_row_all_reach_the_dashboard(
    server: Server,
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=server.auth) as http:
        for i in range(2000):
            response = await http.post("/api/patients", json=patient_body(given_name=f"P{i}"))
            assert response.status_code == 201, response.text

        async def all_counted() -> bool:
            return bool((await dashboard(http))["patients_total"] == 2000)

        await eventually(all_counted, timeout=120, interval=0.2)
        summary = await dashboard(http)
        assert summary["registrations_by_day"][-1]["count"] == 2000
        assert summary["events_processed_total"] == 2000
        assert len(await all_patient_ids(http)) == 2000


async def test_a_killed_server_delivers_every_committed_event_after_restart(
    server_factory: type[Server], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    # one worker with a one-slot queue makes analytics lag the burst, so the kill lands while
    # events are committed but not yet processed
    throttled = {"HEALTHFLOW_WORKER_COUNT": "1", "HEALTHFLOW_WORKER_QUEUE_SIZE": "1"}
    first = server_factory(data_dir, throttled).start()
    async with httpx.AsyncClient(base_url=first.url, timeout=30, headers=first.auth) as http:

        async def register(i: int) -> None:
            response = await http.post("/api/patients", json=patient_body(given_name=f"K{i}"))
            assert response.status_code == 201

        for start in range(0, 400, 20):
            await asyncio.gather(*(register(i) for i in range(start, start + 20)))
    first.kill()
    left = unpublished(data_dir)
    assert left > 0, "the kill came too late to test recovery; throttle the first run harder"

    second = server_factory(data_dir).start()
    async with httpx.AsyncClient(base_url=second.url, timeout=30, headers=second.auth) as http:

        async def drained() -> bool:
            ready = (await http.get("/health/ready")).json()
            return bool(ready["checks"]["outbox"]["pending"] == 0)

        await eventually(drained, timeout=120, interval=0.2)

        async def settled() -> bool:
            return bool((await dashboard(http))["patients_total"] == 400)

        await eventually(settled, timeout=60, interval=0.2)
        summary = await dashboard(http)
        assert len(await all_patient_ids(http)) == 400 == summary["patients_total"]
        assert summary["events_processed_total"] == 400  # redelivered events counted once


async def test_sigterm_finishes_in_flight_work_and_exits_cleanly(
    server_factory: type[Server], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    first = server_factory(data_dir, {"HEALTHFLOW_LOG_LEVEL": "info"}).start()
    async with httpx.AsyncClient(base_url=first.url, timeout=30, headers=first.auth) as http:
        for i in range(50):
            response = await http.post("/api/patients", json=patient_body(given_name=f"T{i}"))
            assert response.status_code == 201
    # uvicorn re-raises the signal after its graceful shutdown, so the status reads -SIGTERM
    assert first.terminate() in (0, -signal.SIGTERM)
    assert "healthflow_stopped" in first.log.read_text()
    second = server_factory(data_dir).start()
    async with httpx.AsyncClient(base_url=second.url, timeout=30, headers=second.auth) as http:

        async def counted() -> bool:
            return bool((await dashboard(http))["patients_total"] == 50)

        await eventually(counted, timeout=60, interval=0.2)
        assert (await dashboard(http))["events_processed_total"] == 50


async def test_websocket_clients_see_registration_status_change_and_processing(
    server: Server,
) -> None:
    ws_url = server.url.replace("http", "ws") + f"/ws?access_token={server.token}"
    async with websockets.connect(ws_url) as first, websockets.connect(ws_url) as second:
        for ws in (first, second):
            await subscribe(ws.send, ws.recv, ["patients", "metrics"])
        async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=server.auth) as http:
            created = (await http.post("/api/patients", json=patient_body())).json()
            await http.put(f"/api/patients/{created['id']}/status", json={"status": "waiting"})
        for ws in (first, second):
            messages: list[dict[str, Any]] = []
            async with asyncio.timeout(10):
                while len(messages) < 4:
                    message = json.loads(await ws.recv())
                    if message["type"] != "MetricsUpdated":  # the once-a-second feed
                        messages.append(message)
            by_type: dict[str, list[dict[str, Any]]] = {}
            for m in messages:
                by_type.setdefault(m["type"], []).append(m)
            assert by_type["PatientCreated"][0]["data"]["patient_id"] == created["id"]
            assert by_type["PatientStatusUpdated"][0]["data"]["status"] == "waiting"
            assert len(by_type["EventProcessed"]) == 2
            seqs = [m["seq"] for m in messages]
            assert seqs == sorted(seqs) and len(set(seqs)) == 4
            assert {m["topic"] for m in messages} <= {"patients", "metrics"}
            assert all({"type", "data", "time", "seq"} <= m.keys() for m in messages)
            assert "Ada" not in json.dumps(messages)  # live push is de-identified
