"""A real `healthflow serve` with the MQTT subscriber on, fed by `healthflow simulate --via mqtt`
through the real Mosquitto: one deteriorating patient gets one critical alert, status critical,
a WebSocket client sees PatientCritical and AlertRaised, and after recovery the alert resolves."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import httpx
import orjson
import pytest
from httpx_ws import aconnect_ws

from tests.conftest import dev_headers, eventually, patient_body, subscribe
from tests.telemetry_support import BROKER, needs_broker

HEALTHFLOW = str(Path(sys.executable).with_name("healthflow"))

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.mqtt,
    needs_broker,
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    run = uuid.uuid4().hex[:12]
    port = _free_port()
    env = {
        **os.environ,
        "HEALTHFLOW_DATA_DIR": str(tmp_path / "data"),
        "HEALTHFLOW_PORT": str(port),
        "HEALTHFLOW_MQTT_URL": f"mqtt://{BROKER[0]}:{BROKER[1]}",
        "HEALTHFLOW_MQTT_TOPIC_PREFIX": f"hf-e2e-{run}/",
        "HEALTHFLOW_MQTT_CLIENT_ID": f"hf-e2e-{run}",
        "HEALTHFLOW_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [HEALTHFLOW, "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "serve.log").open("wb"),
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        asyncio.run(_forget_session(env["HEALTHFLOW_MQTT_CLIENT_ID"]))


async def _wait_until_subscribed(client: httpx.AsyncClient, env: dict[str, str]) -> None:
    """Publish a probe reading until the server stores one: then its subscription is live."""
    patient = (await client.post("/api/patients", json=patient_body(ward="PROBE"))).json()["id"]
    device = await client.post(
        "/api/devices", json={"device_id": "probe", "patient_id": patient, "kind": "probe"}
    )
    key = device.json()["key"]
    topic = f"{env['HEALTHFLOW_MQTT_TOPIC_PREFIX']}devices/probe/messages/events/"
    async with aiomqtt.Client(*BROKER, identifier=f"hf-e2e-probe-{uuid.uuid4().hex[:6]}") as mqtt:
        async with asyncio.timeout(20):
            while True:
                reading = {"device_key": key, "ts": datetime.now(UTC).isoformat(), "heart_rate": 70}
                await mqtt.publish(topic, orjson.dumps(reading), qos=1)
                vitals = (await client.get(f"/api/patients/{patient}/vitals")).json()["items"]
                if vitals:
                    return
                await asyncio.sleep(0.2)


async def test_simulated_deterioration_over_mqtt_end_to_end(
    server: tuple[str, dict[str, str]],
) -> None:
    base_url, env = server
    headers = dev_headers(Path(env["HEALTHFLOW_DATA_DIR"]))
    async with httpx.AsyncClient(base_url=base_url, timeout=10, headers=headers) as client:

        async def up() -> bool:
            try:
                return (await client.get("/health/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, timeout=30, interval=0.2)
        await _wait_until_subscribed(client, env)
        async with aconnect_ws(f"{base_url}/ws", client) as ws:
            await subscribe(ws.send_text, ws.receive_text, ["patients", "alerts"])
            simulate = await asyncio.create_subprocess_exec(
                HEALTHFLOW,
                "simulate",
                "--via=mqtt",
                "--devices=3",
                "--deteriorate=1",
                "--rate=5",
                "--duration=6",
                "--ramp=1",
                "--recover-at=4",
                f"--url={base_url}",
                f"--mqtt-url={env['HEALTHFLOW_MQTT_URL']}",
                f"--topic-prefix={env['HEALTHFLOW_MQTT_TOPIC_PREFIX']}",
                "--seed=7",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _out, err = await asyncio.wait_for(simulate.communicate(), timeout=60)
            assert simulate.returncode == 0, err.decode()[-2000:]
            assert "acknowledged" in err.decode()

            seen: set[str] = set()
            async with asyncio.timeout(20):
                while not {"PatientCritical", "AlertRaised"} <= seen:
                    seen.add(orjson.loads(await ws.receive_text())["type"])

        async def one_resolved_critical_alert() -> bool:
            alerts = (await client.get("/api/alerts?ward=SIM")).json()["items"]
            return [(a["severity"], a["status"]) for a in alerts] == [("critical", "resolved")]

        # the patient deteriorated, then recovered: one alert for the episode, resolved
        await eventually(one_resolved_critical_alert, timeout=20)
        [alert] = (await client.get("/api/alerts?ward=SIM")).json()["items"]
        patient = (await client.get(f"/api/patients/{alert['patient_id']}")).json()
        assert patient["status"] == "critical"  # leaving critical is a clinician's decision
        critical = (await client.get("/api/patients?status=critical")).json()["items"]
        assert [p["id"] for p in critical] == [alert["patient_id"]]


async def _forget_session(client_id: str) -> None:
    """Drop the server's persistent session, so the shared broker keeps nothing of this test."""
    async with aiomqtt.Client(*BROKER, identifier=client_id, clean_session=True):
        pass
