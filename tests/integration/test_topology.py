"""The multi-process topology against the real servers: gateway, patients, analytics and worker as
separate `healthflow serve --role ...` processes, each store its own PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from healthflow import cluster
from healthflow.app import cluster_plan
from healthflow.settings import Settings
from tests.conftest import dev_headers, eventually, patient_body, subscribe
from tests.integration.conftest import gateway

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(params=["role-all", "topology"])
def entry_url(request: pytest.FixtureRequest, topology_settings: Settings) -> Iterator[str]:
    """The public URL of one deployment shape: one `--role all` process, or the four roles."""
    if request.param == "topology":
        topology: dict[str, cluster.Child] = request.getfixturevalue("topology")
        yield topology["gateway"].url
        return
    env = {**dict(cluster_plan(topology_settings))["gateway"], "HEALTHFLOW_ROLE": "all"}
    upgrade = subprocess.run(
        [sys.executable, "-m", "healthflow", "db", "upgrade"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    children = cluster.start([("all", env)], ready_timeout_s=90, say=lambda _: None)
    try:
        yield children[0].url
    finally:
        cluster.stop(children)


async def dashboard(client: httpx.AsyncClient) -> dict[str, Any]:
    summary: dict[str, Any] = (await client.get("/api/analytics/dashboard")).json()
    return summary


async def test_a_registration_through_the_entry_point_reaches_the_dashboard(
    entry_url: str, topology_settings: Settings
) -> None:
    headers = dev_headers(topology_settings.data_dir)
    async with httpx.AsyncClient(base_url=entry_url, timeout=10, headers=headers) as client:
        created = await client.post("/api/patients", json=patient_body())
        assert created.status_code == 201
        assert created.headers["location"] == f"/api/patients/{created.json()['id']}"

        async def counted() -> bool:
            return (await dashboard(client))["patients_total"] == 1

        await eventually(counted, timeout=30)
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "healthy"


async def test_the_gateway_readiness_covers_every_service(
    topology: dict[str, cluster.Child],
    topology_settings: Settings,
) -> None:
    async with gateway(topology, topology_settings) as client:
        ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert {n: c["status"] for n, c in ready.json()["checks"].items()} == {
        "event_bus": "up",
        "patients": "up",
        "analytics": "up",
        "worker": "up",
    }


async def test_bad_input_through_the_entry_point_gets_a_problem_and_changes_nothing(
    entry_url: str, topology_settings: Settings
) -> None:
    headers = dev_headers(topology_settings.data_dir)
    async with httpx.AsyncClient(base_url=entry_url, timeout=10, headers=headers) as client:
        refused = await client.post("/api/patients", json=patient_body(sex="unknown-value"))
        missing = await client.get("/api/patients/not-a-uuid")

        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert missing.status_code == 422
        assert (await client.get("/api/patients")).json()["items"] == []


async def test_the_entry_point_websocket_pushes_patient_events(
    entry_url: str, topology_settings: Settings
) -> None:
    headers = dev_headers(topology_settings.data_dir)
    token = headers["Authorization"].removeprefix("Bearer ")
    ws_url = entry_url.replace("http://", "ws://") + f"/ws?access_token={token}"
    async with (
        websockets.connect(ws_url) as ws,
        httpx.AsyncClient(base_url=entry_url, timeout=10, headers=headers) as client,
    ):
        await subscribe(ws.send, ws.recv, ["patients"])
        created = await client.post("/api/patients", json=patient_body())
        async with asyncio.timeout(20):
            while True:
                message = orjson.loads(await ws.recv())
                if message["type"] == "PatientCreated":
                    break
        assert message["data"]["patient_id"] == created.json()["id"]
        assert "given_name" not in message["data"]


async def test_killing_the_worker_mid_stream_loses_no_event(
    topology: dict[str, cluster.Child], topology_settings: Settings
) -> None:
    worker = topology["worker"]
    async with gateway(topology, topology_settings) as client:

        async def register(n: int) -> None:
            for _ in range(n):
                answer = await client.post("/api/patients", json=patient_body())
                assert answer.status_code == 201

        first = asyncio.create_task(register(30))

        async def some_processed() -> bool:
            return (await dashboard(client))["events_processed_total"] >= 3

        await eventually(some_processed, timeout=30)
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
        await first
        await register(10)  # accepted while no worker runs: they wait in RabbitMQ
        worker_env = dict(cluster_plan(topology_settings))["worker"]
        [restarted] = await asyncio.to_thread(
            cluster.start, [("worker", worker_env)], ready_timeout_s=90, say=lambda _: None
        )
        topology["worker"] = restarted

        async def all_processed() -> bool:
            return (await dashboard(client))["events_processed_total"] == 40

        await eventually(all_processed, timeout=60)
        summary = await dashboard(client)
        assert summary["patients_total"] == 40
        assert summary["patients_by_status"]["registered"] == 40


async def test_a_stopped_service_makes_the_gateway_answer_503(
    topology: dict[str, cluster.Child],
    topology_settings: Settings,
) -> None:
    cluster.stop([topology["analytics"]])
    async with gateway(topology, topology_settings) as client:
        down = await client.get("/api/analytics/dashboard")
        ready = await client.get("/health/ready")
        patients = await client.get("/api/patients")

    assert down.status_code == 503
    assert down.headers["content-type"] == "application/problem+json"
    assert "analytics" in down.json()["detail"]
    assert ready.status_code == 503
    assert ready.json()["checks"]["analytics"]["status"] == "down"
    assert patients.status_code == 200


def wait_until(url: str, command: subprocess.Popen[bytes]) -> httpx.Response:
    for _ in range(600):
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code == 200:
                return answer
        except httpx.HTTPError:
            pass
        assert command.poll() is None, "cluster exited early"
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered 200")


@pytest.mark.parametrize("moment", ["when-ready", "during-start-up"])
def test_the_cluster_command_stops_every_role_on_ctrl_c(
    moment: str, topology_settings: Settings
) -> None:
    env = {**os.environ, **dict(cluster_plan(topology_settings))["gateway"]}
    del env["HEALTHFLOW_ROLE"]
    base = topology_settings.port
    command = subprocess.Popen(
        [sys.executable, "-m", "healthflow", "cluster"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if moment == "when-ready":
            ready = wait_until(f"http://127.0.0.1:{base}/health/ready", command)
            assert set(ready.json()["checks"]) == {"event_bus", "patients", "analytics", "worker"}
        else:
            wait_until(f"http://127.0.0.1:{base + 1}/health", command)  # patients is up

        command.send_signal(signal.SIGINT)
        assert command.wait(timeout=60) == 0
        for port in range(base, base + 4):
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
            command.wait()


def test_the_cluster_command_refuses_an_in_process_broker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHFLOW_")}
    refused = subprocess.run(
        [sys.executable, "-m", "healthflow", "cluster", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "HEALTHFLOW_BROKER_URL=amqp://" in refused.stderr


async def test_killing_the_patients_service_mid_burst_loses_no_committed_event(
    topology: dict[str, cluster.Child], topology_settings: Settings
) -> None:
    patients = topology["patients"]
    async with gateway(topology, topology_settings) as client:
        accepted: list[str] = []

        async def register(n: int) -> None:
            for _ in range(n):
                answer = await client.post("/api/patients", json=patient_body())
                if answer.status_code == 201:
                    accepted.append(answer.json()["id"])

        burst = asyncio.create_task(register(40))
        await eventually(lambda: _true(len(accepted) >= 5), timeout=30)
        patients.process.send_signal(signal.SIGKILL)  # commits may be unpublished in the outbox
        patients.process.wait()
        await burst
        env = dict(cluster_plan(topology_settings))["patients"]
        [restarted] = await asyncio.to_thread(
            cluster.start, [("patients", env)], ready_timeout_s=90, say=lambda _: None
        )
        topology["patients"] = restarted

        listed = (await client.get("/api/patients", params={"limit": 500})).json()["items"]
        stored = {p["id"] for p in listed}
        assert set(accepted) <= stored  # every 201 was committed

        async def all_counted() -> bool:
            summary = await dashboard(client)
            return bool(summary["events_processed_total"] == len(stored))

        await eventually(all_counted, timeout=60)
        assert (await dashboard(client))["patients_total"] == len(stored)


async def _true(value: bool) -> bool:
    return value
