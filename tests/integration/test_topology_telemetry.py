"""Device telemetry and clinical alerting in the split topology: gateway, patients, analytics and
worker as separate `healthflow serve --role ...` processes over the real PostgreSQL (one database
per service), RabbitMQ, Redis (cache and live-push backplane) and Mosquitto.

A patient and a device are registered through the gateway; readings arrive over HTTP through the
gateway and over MQTT at the worker; the worker scores them on the analytics service and moves
the patient to critical on the patients service. Unhappy paths: a service down while readings
arrive (retried, never lost, handled once), a bad device key over MQTT (refused, nothing stored).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import httpx
import orjson
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from healthflow import cluster
from healthflow.composition.roles import cluster_plan
from healthflow.messaging.events import CloudEvent
from healthflow.settings import Settings
from tests.conftest import subscribe
from tests.integration.conftest import Rabbit, gateway, start_roles
from tests.telemetry_support import (
    BROKER,
    CRITICAL,
    NORMAL,
    admit_with_device,
    at,
    needs_broker,
    post_readings,
)

WAIT_S = 90.0  # generous: four processes share two cores with other work


pytestmark = [
    pytest.mark.integration,
    pytest.mark.e2e,
    pytest.mark.mqtt,
    needs_broker,
]


@pytest.fixture
def topology_overrides() -> dict[str, Any]:
    run = uuid.uuid4().hex[:12]
    return {
        "mqtt_url": f"mqtt://{BROKER[0]}:{BROKER[1]}",
        "mqtt_topic_prefix": f"hf-topology-{run}/",
        "mqtt_client_id": f"hf-topology-{run}",
        # long enough for a stopped service to be back before any reading is dead-lettered
        "bus_retry_delays_s": (2.0, 4.0, 8.0, 16.0, 32.0),
        "service_retries": 2,
    }


@pytest.fixture(autouse=True)
def forget_mqtt_session(topology_overrides: dict[str, Any]) -> Iterator[None]:
    """After the processes stopped, drop the worker's persistent session on the shared broker."""
    yield

    async def forget() -> None:
        client_id = topology_overrides["mqtt_client_id"]
        async with aiomqtt.Client(*BROKER, identifier=client_id, clean_session=True):
            pass

    asyncio.run(forget())


async def until(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for a condition across processes; fail naming it after WAIT_S."""
    try:
        async with asyncio.timeout(WAIT_S):
            while not await predicate():
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def metric(url: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus sample over the series matching `labels`, from `/metrics`."""
    text = (await httpx.AsyncClient().get(f"{url}/metrics", timeout=10)).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def vitals(client: httpx.AsyncClient, patient_id: str) -> list[dict[str, Any]]:
    """The stored series; empty while analytics is down or has not seen the patient yet."""
    answer = await client.get(f"/api/patients/{patient_id}/vitals", params={"limit": 1000})
    items: list[dict[str, Any]] = answer.json()["items"] if answer.status_code == 200 else []
    return items


async def wait_for_vitals(client: httpx.AsyncClient, patient_id: str, count: int) -> None:
    async def stored() -> bool:
        return len(await vitals(client, patient_id)) >= count

    await until(stored, f"{count} stored readings")


async def alerts(client: httpx.AsyncClient, patient_id: str) -> list[dict[str, Any]]:
    answer = await client.get("/api/alerts", params={"patient_id": patient_id})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def status_of(client: httpx.AsyncClient, patient_id: str) -> str:
    return str((await client.get(f"/api/patients/{patient_id}")).json()["status"])


async def critical_moves(client: httpx.AsyncClient, patient_id: str) -> list[dict[str, Any]]:
    history = (await client.get(f"/api/patients/{patient_id}/events")).json()["items"]
    return [e["data"] for e in history if e["type"] == "PatientCritical"]


async def mqtt_subscribed(worker_url: str) -> None:
    """The worker's subscription is live (its readiness says so), so nothing published is missed."""

    async def up() -> bool:
        answer = await httpx.AsyncClient().get(f"{worker_url}/health/ready", timeout=10)
        return bool(answer.json()["checks"].get("mqtt", {}).get("status") == "up")

    await until(up, "the worker's MQTT subscription")


async def publish(settings: Settings, device_id: str, messages: list[dict[str, Any]]) -> None:
    """A device publishing device-to-cloud messages at QoS 1, IoT Hub's topic convention."""
    topic = f"{settings.mqtt_topic_prefix}devices/{device_id}/messages/events/"
    async with aiomqtt.Client(*BROKER, identifier=f"hf-device-{uuid.uuid4().hex[:8]}") as mqtt:
        for message in messages:
            await mqtt.publish(topic, orjson.dumps(message), qos=1)


def device_client(topology: dict[str, cluster.Child]) -> httpx.AsyncClient:
    """A device talking to the gateway: its key only, no bearer token."""
    return httpx.AsyncClient(base_url=topology["gateway"].url, timeout=10)


def restart(
    topology: dict[str, cluster.Child], settings: Settings, role: str
) -> Awaitable[list[cluster.Child]]:
    env = dict(cluster_plan(settings))[role]
    return asyncio.to_thread(start_roles, [(role, env)])


async def test_a_deteriorating_patient_gets_one_critical_alert_across_the_split_topology(
    topology: dict[str, cluster.Child], topology_settings: Settings, rabbit: Rabbit
) -> None:
    settings = topology_settings
    async with gateway(topology, settings) as client, device_client(topology) as device:
        await mqtt_subscribed(topology["worker"].url)
        patient_id, key = await admit_with_device(client, "mon-1", ward="ICU")
        token = client.headers["authorization"].removeprefix("Bearer ")
        ws_url = topology["gateway"].url.replace("http://", "ws://") + f"/ws?access_token={token}"
        seen: list[dict[str, Any]] = []

        async with websockets.connect(ws_url) as ws:
            await subscribe(ws.send, ws.recv, ["patients", "alerts", f"patient:{patient_id}"])

            async def receive_until(*wanted: str) -> None:
                """Collect live messages until each wanted `Type` or `Type:change` arrived."""

                def kinds() -> set[str]:
                    return {m["type"] for m in seen} | {
                        f"{m['type']}:{(m.get('data') or {}).get('change')}" for m in seen
                    }

                async with asyncio.timeout(WAIT_S):
                    while not set(wanted) <= kinds():
                        seen.append(orjson.loads(await ws.recv()))

            # baseline over HTTP through the gateway (device key, no bearer token): no alert
            posted = await post_readings(
                device, "mon-1", key, [{"ts": at(i), **NORMAL} for i in range(3)]
            )
            assert posted.status_code == 202, posted.text
            assert posted.json()["accepted"] == 3
            await wait_for_vitals(client, patient_id, 3)
            assert await alerts(client, patient_id) == []

            # deterioration over MQTT, reading after reading: one critical alert, not ten
            await publish(
                settings,
                "mon-1",
                [{"device_key": key, "ts": at(i), **CRITICAL} for i in range(3, 13)],
            )
            await receive_until("VitalsUpdated", "AlertRaised", "PatientCritical")
            await wait_for_vitals(client, patient_id, 13)
            [alert] = await alerts(client, patient_id)
            assert (alert["severity"], alert["status"], alert["readings"]) == (
                "critical",
                "open",
                10,
            )
            assert alert["ward"] == "ICU"
            assert await status_of(client, patient_id) == "critical"
            [move] = await critical_moves(client, patient_id)
            assert (move["source"], move["alert_id"]) == ("news2", alert["id"])
            news2 = (await client.get(f"/api/patients/{patient_id}/news2")).json()
            assert news2["risk"] == "high"

            # a clinician acknowledges through the gateway; the analytics service audits it
            ack = await client.post(f"/api/alerts/{alert['id']}/ack", json={"by": "dr.osei"})
            assert ack.status_code == 200, ack.text
            assert ack.json()["acknowledged_by"] == "dr.osei"

            # recovery: three calm readings resolve the alert
            await publish(
                settings,
                "mon-1",
                [{"device_key": key, "ts": at(i), **NORMAL} for i in range(13, 16)],
            )
            await receive_until("AlertUpdated:acknowledged", "AlertUpdated:resolved")

            async def resolved() -> bool:
                return [a["status"] for a in await alerts(client, patient_id)] == ["resolved"]

            await until(resolved, "the alert to resolve")

        raised = [m for m in seen if m["type"] == "AlertRaised"]
        criticals = [m for m in seen if m["type"] == "PatientCritical"]
        assert [m["data"]["id"] for m in raised] == [alert["id"]]
        assert [m["data"]["patient_id"] for m in criticals] == [patient_id]
        assert "given_name" not in criticals[0]["data"]
        updates = [m["data"]["change"] for m in seen if m["type"] == "AlertUpdated"]
        assert updates == ["acknowledged", "resolved"]

        # PHI reads and the acknowledgement served by analytics are in its own audit chain
        audited = httpx.AsyncClient(base_url=topology["analytics"].url, headers=client.headers)
        async with audited:
            records = (await audited.get("/api/audit", params={"limit": 500})).json()["items"]
        actions = {r["action"] for r in records}
        assert "GET /api/patients/{patient_id}/vitals" in actions
        assert "POST /api/alerts/{alert_id}/ack" in actions

        # a redelivery of the reading that raised the alert, after a clinician moved the
        # patient on, changes nothing: no second alert, no second move into critical
        moved = await client.put(f"/api/patients/{patient_id}/status", json={"status": "admitted"})
        assert moved.status_code == 200, moved.text
        raising = (await vitals(client, patient_id))[3]  # oldest first: the first critical one
        assert raising["news2"]["risk"] == "high"
        await redeliver(rabbit, patient_id, raising)
        # and a fresh reading behind it: the same patient's readings are handled in order
        await publish(settings, "mon-1", [{"device_key": key, "ts": at(16), **NORMAL}])
        await wait_for_vitals(client, patient_id, 17)

        async def handled_all() -> bool:
            done = await metric(
                topology["worker"].url,
                "healthflow_events_processed_total",
                pool="vitals",
                type="VitalSignsRecorded",
            )
            return done >= 18  # 17 readings and the redelivery

        await until(handled_all, "the worker to handle the redelivery")
        assert await status_of(client, patient_id) == "admitted"
        assert [a["id"] for a in await alerts(client, patient_id)] == [alert["id"]]
        assert len(await critical_moves(client, patient_id)) == 1


async def redeliver(rabbit: Rabbit, patient_id: str, stored: dict[str, Any]) -> None:
    """Publish a reading's VitalSignsRecorded event again, as the bus does after a lost ack."""
    event = CloudEvent(
        id=stored["reading_id"],
        source=f"/healthflow/devices/{stored['device_id']}",
        type="VitalSignsRecorded",
        time=datetime.now(UTC),
        subject=patient_id,
        data={
            "device_id": stored["device_id"],
            "patient_id": patient_id,
            "reading": {"ts": stored["ts"], **stored["values"]},
            "ward": "ICU",
        },
    )
    bus = rabbit.bus()
    await bus.start()
    try:
        await bus.publish([event])
    finally:
        await bus.close()


async def test_readings_that_arrive_while_analytics_is_down_are_retried_and_handled_once(
    topology: dict[str, cluster.Child], topology_settings: Settings, rabbit: Rabbit
) -> None:
    settings = topology_settings
    async with gateway(topology, settings) as client, device_client(topology) as device:
        patient_id, key = await admit_with_device(client, "mon-2")
        cluster.stop([topology["analytics"]])

        # the intake (patients) still takes them durably
        readings = [{"ts": at(i), **CRITICAL} for i in range(6)]
        posted = await post_readings(device, "mon-2", key, readings)
        assert posted.status_code == 202, posted.text
        assert posted.json()["accepted"] == 6

        async def worker_failed() -> bool:
            failed = await metric(
                topology["worker"].url, "healthflow_events_failed_total", pool="vitals"
            )
            return failed >= 1

        await until(worker_failed, "the worker to fail a reading while analytics is down")
        [topology["analytics"]] = await restart(topology, settings, "analytics")

        await wait_for_vitals(client, patient_id, 6)

        async def critical() -> bool:
            return await status_of(client, patient_id) == "critical"

        await until(critical, "the patient to become critical")
        [alert] = await alerts(client, patient_id)
        assert alert["severity"] == "critical"
        assert len(await vitals(client, patient_id)) == 6
        assert len(await critical_moves(client, patient_id)) == 1
        bus = rabbit.bus()
        await bus.start()
        try:
            assert await bus.dead_letters(group="vitals", limit=10) == []
        finally:
            await bus.close()


async def test_mqtt_messages_sent_while_the_intake_is_down_are_kept_until_it_is_back(
    topology: dict[str, cluster.Child], topology_settings: Settings
) -> None:
    settings = topology_settings
    async with gateway(topology, settings) as client:
        await mqtt_subscribed(topology["worker"].url)
        patient_id, key = await admit_with_device(client, "mon-3")
        cluster.stop([topology["patients"]])

        await publish(
            settings, "mon-3", [{"device_key": key, "ts": at(i), **CRITICAL} for i in range(4)]
        )

        async def held() -> bool:
            failures = await metric(topology["worker"].url, "healthflow_mqtt_store_failures_total")
            return failures >= 1

        await until(held, "the worker to hold a message it could not store")
        [topology["patients"]] = await restart(topology, settings, "patients")

        await wait_for_vitals(client, patient_id, 4)

        async def critical() -> bool:
            return await status_of(client, patient_id) == "critical"

        await until(critical, "the patient to become critical")
        assert [a["severity"] for a in await alerts(client, patient_id)] == ["critical"]
        assert len(await critical_moves(client, patient_id)) == 1


async def test_a_bad_device_key_is_refused_and_stores_nothing(
    topology: dict[str, cluster.Child], topology_settings: Settings
) -> None:
    settings = topology_settings
    async with gateway(topology, settings) as client, device_client(topology) as device:
        await mqtt_subscribed(topology["worker"].url)
        patient_id, key = await admit_with_device(client, "mon-4")
        other_id, other_key = await admit_with_device(client, "mon-5")

        # over HTTP through the gateway: a wrong key is a 401 problem
        wrong = await post_readings(device, "mon-4", "not-the-key", [{"ts": at(0), **CRITICAL}])
        assert wrong.status_code == 401
        assert wrong.headers["content-type"] == "application/problem+json"
        assert wrong.headers["www-authenticate"] == "DeviceKey"

        # over MQTT: a wrong key, no key, another device's key, an unknown device; then a good one
        await publish(settings, "mon-4", [{"device_key": "not-the-key", "ts": at(1), **CRITICAL}])
        await publish(settings, "mon-4", [{"ts": at(2), **CRITICAL}])
        await publish(settings, "mon-4", [{"device_key": other_key, "ts": at(3), **CRITICAL}])
        await publish(settings, "ghost", [{"device_key": key, "ts": at(4), **CRITICAL}])
        await publish(settings, "mon-4", [{"device_key": key, "ts": at(5), **NORMAL}])

        # the subscriber handles each device's messages in order (devices side by side): the
        # good one is stored, and all four refusals are counted by the intake
        await wait_for_vitals(client, patient_id, 1)

        async def all_refused() -> bool:
            refused = await metric(
                topology["patients"].url,
                "healthflow_telemetry_refused_total",
                transport="mqtt",
                reason="auth_failed",
            )
            return refused >= 4

        await until(all_refused, "the intake to refuse the four bad keys")
        [stored] = await vitals(client, patient_id)
        assert datetime.fromisoformat(stored["ts"]) == datetime.fromisoformat(at(5))
        assert await vitals(client, other_id) == []
        assert await alerts(client, patient_id) == []
        assert (await client.get("/api/quarantine")).json()["items"] == []
        assert await status_of(client, patient_id) == "registered"
        refused = await metric(
            topology["patients"].url,
            "healthflow_telemetry_refused_total",
            transport="mqtt",
            reason="auth_failed",
        )
        assert refused == 4
