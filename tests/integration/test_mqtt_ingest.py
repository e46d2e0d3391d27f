"""MQTT intake against the real Mosquitto at 127.0.0.1:1883 (skipped when it is down).

Each test uses its own topic prefix and client ids, so runs beside other agents never mix.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import httpx
import orjson
import pytest
from fastapi import FastAPI
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from healthflow.app import build_app
from healthflow.settings import Settings
from tests.conftest import auth_headers, eventually, subscribe
from tests.telemetry_support import (
    BROKER,
    CRITICAL,
    NORMAL,
    admit_with_device,
    at,
    needs_broker,
    wait_for_vitals,
)

pytestmark = [
    pytest.mark.mqtt,
    needs_broker,
]


@pytest.fixture
def mqtt_settings(make_settings: Callable[..., Settings]) -> Settings:
    run = uuid.uuid4().hex[:12]
    return make_settings(
        mqtt_url=f"mqtt://{BROKER[0]}:{BROKER[1]}",
        mqtt_topic_prefix=f"hf-test-{run}/",
        mqtt_client_id=f"hf-test-ingest-{run}",
    )


@pytest.fixture
async def forget_session(mqtt_settings: Settings) -> AsyncIterator[None]:
    yield
    # drop the subscriber's persistent session so the broker keeps nothing of this test
    async with aiomqtt.Client(*BROKER, identifier=mqtt_settings.mqtt_client_id, clean_session=True):
        pass


@asynccontextmanager
async def running(
    settings: Settings, *, subscribed: bool = True
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app started; unless told otherwise, its MQTT subscriber subscribed."""
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        mqtt = app.state.platform.telemetry.mqtt
        if subscribed:
            async with asyncio.timeout(10):
                await mqtt.subscribed.wait()
        transport = ASGIWebSocketTransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=auth_headers(app)
        ) as client:
            yield app, client


async def publish(settings: Settings, device_id: str, payload: bytes | dict[str, Any]) -> None:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    topic = f"{settings.mqtt_topic_prefix}devices/{device_id}/messages/events/"
    async with aiomqtt.Client(*BROKER, identifier=f"hf-test-device-{uuid.uuid4().hex[:8]}") as c:
        await c.publish(topic, body, qos=1)


async def publish_seconds(settings: Settings, key: str, count: int) -> None:
    """`count` normal readings of monitor mon-1, one a second from `at(0)`, over one connection."""
    topic = f"{settings.mqtt_topic_prefix}devices/mon-1/messages/events/"
    async with aiomqtt.Client(*BROKER, identifier=f"hf-test-series-{uuid.uuid4().hex[:8]}") as c:
        for second in range(count):
            body = {"device_key": key, "ts": at(second), **NORMAL}
            await c.publish(topic, orjson.dumps(body), qos=1)


async def stored_whole_within_the_queue_bound(
    app: FastAPI, client: httpx.AsyncClient, patient_id: str, count: int, *, queue: int
) -> None:
    """All `count` readings stored in order, the subscriber never holding more than one batch
    being stored and a full queue behind it."""
    stored = await wait_for_vitals(client, patient_id, count)
    assert [s["ts"][:19] for s in stored] == [at(i)[:19] for i in range(count)]
    held = (await app.state.platform.telemetry.mqtt.check()).detail["most_unacknowledged"]
    assert held <= 2 * queue + 1


async def test_a_reading_published_over_mqtt_is_stored_and_scored(
    mqtt_settings: Settings, forget_session: None
) -> None:
    async with running(mqtt_settings) as (_, client):
        patient_id, key = await admit_with_device(client)
        await publish(mqtt_settings, "mon-1", {"device_key": key, "ts": at(0), **NORMAL})
        [stored] = await wait_for_vitals(client, patient_id, 1)
        assert stored["news2"]["risk"] == "low"


async def test_bad_messages_are_refused_and_the_subscriber_carries_on(
    mqtt_settings: Settings, forget_session: None
) -> None:
    async with running(mqtt_settings) as (_, client):
        patient_id, key = await admit_with_device(client)
        await publish(mqtt_settings, "mon-1", {"device_key": "wrong", "ts": at(0), **NORMAL})
        await publish(mqtt_settings, "mon-1", {"ts": at(1), **NORMAL})  # no key
        await publish(mqtt_settings, "nobody", {"device_key": key, "ts": at(2), **NORMAL})
        await publish(mqtt_settings, "mon-1", b"{not json")
        await publish(mqtt_settings, "mon-1", b"[1, 2]")
        await publish(mqtt_settings, "mon-1", {"device_key": key, "ts": at(3), "pulse": 70})
        await publish(mqtt_settings, "mon-1", {"device_key": key, "readings": []})
        await publish(mqtt_settings, "mon-1", b"{" + b" " * 1_100_000 + b"}")
        await publish(
            mqtt_settings, "mon-1", {"device_key": key, "ts": at(4), **NORMAL, "spo2": 120}
        )
        await publish(mqtt_settings, "mon-1", {"device_key": key, "ts": at(5), **NORMAL})
        # messages on one topic arrive in order: once the last is stored, all were handled
        [stored] = await wait_for_vitals(client, patient_id, 1)
        assert stored["ts"].startswith(at(5)[:19])
        held = (await client.get("/api/quarantine")).json()["items"]
        assert [(q["reason"], q["field"]) for q in held] == [("out_of_range", "spo2")]


async def test_a_burst_from_several_devices_is_stored_whole_and_in_each_devices_order(
    mqtt_settings: Settings, forget_session: None
) -> None:
    # messages that queue up are stored together; each device's readings must still be scored
    # in the order it sent them (none counted as late), and every one acknowledged and kept
    async with running(mqtt_settings) as (_, client):
        devices = {f"mon-{i}": await admit_with_device(client, f"mon-{i}") for i in range(3)}
        prefix = mqtt_settings.mqtt_topic_prefix
        async with aiomqtt.Client(*BROKER, identifier=f"hf-test-burst-{uuid.uuid4().hex[:8]}") as c:
            for second in range(60):
                for device_id, (_, key) in devices.items():
                    body = {"device_key": key, "ts": at(second), **NORMAL}
                    topic = f"{prefix}devices/{device_id}/messages/events/"
                    await c.publish(topic, orjson.dumps(body), qos=1)
        for patient_id, _ in devices.values():
            stored = await wait_for_vitals(client, patient_id, 60)
            assert [s["ts"][:19] for s in stored] == [at(i)[:19] for i in range(60)]
            assert all(s["news2"] is not None for s in stored)  # none arrived late


async def test_a_burst_larger_than_the_subscribers_queue_is_stored_whole_while_storing_is_slow(
    mqtt_settings: Settings, forget_session: None
) -> None:
    # messages the broker handed over beyond the subscriber's queue (this broker keeps to its
    # in-flight window for the first window only) were discarded by aiomqtt unacknowledged: the
    # session stalled until a reconnect, those readings unstored. Now the subscriber stops
    # reading while its queue is full, and the broker holds the rest.
    settings = mqtt_settings.model_copy(update={"worker_queue_size": 8})
    async with running(settings) as (app, client):
        patient_id, key = await admit_with_device(client)
        intake = app.state.platform.telemetry.intake._intake
        accept_many = intake.accept_many

        async def slow(*args: Any) -> list[int]:  # a slow disk: messages pile up behind a store
            await asyncio.sleep(0.05)
            return list(await accept_many(*args))

        intake.accept_many = slow
        await publish_seconds(settings, key, 60)
        await stored_whole_within_the_queue_bound(app, client, patient_id, 60, queue=8)


async def test_deterioration_over_mqtt_gives_one_critical_alert_and_recovery_resolves_it(
    mqtt_settings: Settings, forget_session: None
) -> None:
    async with (
        running(mqtt_settings) as (_, client),
        aconnect_ws("http://testserver/ws", client) as ws,
    ):
        patient_id, key = await admit_with_device(client)
        await subscribe(ws.send_text, ws.receive_text, ["patients", "alerts"])
        for i in range(3):
            await publish(mqtt_settings, "mon-1", {"device_key": key, "ts": at(i), **NORMAL})
        for i in range(3, 10):
            await publish(mqtt_settings, "mon-1", {"device_key": key, "ts": at(i), **CRITICAL})
        await wait_for_vitals(client, patient_id, 10)
        seen: list[str] = []
        async with asyncio.timeout(15):
            while not {"PatientCritical", "AlertRaised"} <= set(seen):
                seen.append(orjson.loads(await ws.receive_text())["type"])
        [alert] = (await client.get("/api/alerts")).json()["items"]
        assert (alert["severity"], alert["status"], alert["readings"]) == ("critical", "open", 7)
        assert (await client.get(f"/api/patients/{patient_id}")).json()["status"] == "critical"

        for i in range(10, 13):
            await publish(mqtt_settings, "mon-1", {"device_key": key, "ts": at(i), **NORMAL})

        async def resolved() -> bool:
            items = (await client.get("/api/alerts")).json()["items"]
            return bool(items[0]["status"] == "resolved")

        await eventually(resolved)
        assert len((await client.get("/api/alerts")).json()["items"]) == 1


async def test_messages_sent_while_the_subscriber_is_down_arrive_after_it_returns(
    mqtt_settings: Settings, forget_session: None
) -> None:
    async with running(mqtt_settings) as (_, client):
        patient_id, key = await admit_with_device(client)
    # the subscriber is gone; its persistent session holds QoS 1 messages for it
    await publish(mqtt_settings, "mon-1", {"device_key": key, "ts": at(0), **NORMAL})
    await publish(mqtt_settings, "mon-1", {"device_key": key, "ts": at(1), **NORMAL})
    async with running(mqtt_settings) as (_, client):
        stored = await wait_for_vitals(client, patient_id, 2)
        assert len(stored) == 2


async def test_a_backlog_read_in_one_go_is_stored_whole_through_a_small_queue(
    mqtt_settings: Settings, forget_session: None
) -> None:
    # a backlog arrives at once: one read takes in more messages than the queue holds, so the
    # subscriber pauses with messages read ahead that the socket will not signal again; they
    # must still be taken once the queue has room, not wait for the broker's next packet
    settings = mqtt_settings.model_copy(update={"worker_queue_size": 4})
    async with running(settings) as (_, client):
        patient_id, key = await admit_with_device(client)
    await publish_seconds(settings, key, 30)
    async with running(settings) as (app, client):
        await stored_whole_within_the_queue_bound(app, client, patient_id, 30, queue=4)


class FlakyLink:
    """A TCP proxy to the broker that can cut every connection and refuse new ones."""

    def __init__(self) -> None:
        self.accepting = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*BROKER)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.accepting = False
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_the_subscriber_reconnects_and_gets_what_was_sent_meanwhile(
    mqtt_settings: Settings, forget_session: None
) -> None:
    link = FlakyLink()
    port = await link.start()
    settings = mqtt_settings.model_copy(update={"mqtt_url": f"mqtt://127.0.0.1:{port}"})
    try:
        async with running(settings) as (app, client):
            mqtt = app.state.platform.telemetry.mqtt
            patient_id, key = await admit_with_device(client)
            await publish(settings, "mon-1", {"device_key": key, "ts": at(0), **NORMAL})
            await wait_for_vitals(client, patient_id, 1)

            link.cut()

            async def disconnected() -> bool:
                return not mqtt.subscribed.is_set()

            await eventually(disconnected)
            await publish(settings, "mon-1", {"device_key": key, "ts": at(1), **NORMAL})
            link.accepting = True
            stored = await wait_for_vitals(client, patient_id, 2)
            assert len(stored) == 2
            assert mqtt.subscribed.is_set()
    finally:
        await link.close()


async def test_a_broker_closing_the_connection_before_connack_is_retried_at_once(
    mqtt_settings: Settings, forget_session: None
) -> None:
    """aiomqtt alone would wait out its 10 s timeout on each such connect before trying again."""
    link = FlakyLink()
    port = await link.start()
    link.accepting = False
    settings = mqtt_settings.model_copy(update={"mqtt_url": f"mqtt://127.0.0.1:{port}"})
    try:
        async with running(settings, subscribed=False) as (app, client):
            mqtt = app.state.platform.telemetry.mqtt

            async def tried_again() -> bool:
                return int((await mqtt.check()).detail["reconnects"]) >= 2

            await eventually(tried_again, timeout=8)
            assert not mqtt.subscribed.is_set()
            link.accepting = True

            async with asyncio.timeout(10):
                await mqtt.subscribed.wait()
            patient_id, key = await admit_with_device(client)
            await publish(settings, "mon-1", {"device_key": key, "ts": at(0), **NORMAL})
            assert len(await wait_for_vitals(client, patient_id, 1)) == 1
    finally:
        await link.close()


async def test_a_message_not_yet_stored_when_the_process_stops_is_delivered_again(
    mqtt_settings: Settings, forget_session: None
) -> None:
    async with running(mqtt_settings) as (app, client):
        patient_id, key = await admit_with_device(client)
        intake = app.state.platform.telemetry.intake._intake
        arrived = asyncio.Event()

        async def stuck(*args: object) -> list[int]:
            arrived.set()
            await asyncio.Event().wait()  # the process "dies" while storing: no PUBACK
            return []

        intake.accept_many = stuck
        await publish(mqtt_settings, "mon-1", {"device_key": key, "ts": at(0), **NORMAL})
        async with asyncio.timeout(10):
            await arrived.wait()
    async with running(mqtt_settings) as (_, client):
        [stored] = await wait_for_vitals(client, patient_id, 1)
        assert stored["ts"].startswith(at(0)[:19])
