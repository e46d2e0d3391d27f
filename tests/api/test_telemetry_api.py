"""POST /api/devices/{id}/telemetry and the worker's relay of MQTT messages (POST
/api/telemetry/messages): what is accepted, what is refused, and that refusals change nothing but
the quarantine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from healthflow.app import build_app
from healthflow.settings import Settings
from tests.conftest import mint_token
from tests.telemetry_support import NORMAL, admit_with_device, at, post_readings, wait_for_vitals

PROBLEM = "application/problem+json"


async def quarantine(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get("/api/quarantine")).json()["items"]
    return items


async def vitals_count(client: httpx.AsyncClient, patient_id: str) -> int:
    return len((await client.get(f"/api/patients/{patient_id}/vitals")).json()["items"])


async def backlog(app: FastAPI) -> int:
    count: int = await app.state.platform.telemetry.intake._intake.backlog()
    return count


async def test_one_reading_is_accepted_stored_and_scored(client: httpx.AsyncClient) -> None:
    patient_id, key = await admit_with_device(client)
    response = await client.post(
        "/api/devices/mon-1/telemetry",
        json={"ts": at(0), **NORMAL},
        headers={"X-Device-Key": key},
    )
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": 0, "rejections": []}
    [stored] = await wait_for_vitals(client, patient_id, 1)
    assert stored["values"]["heart_rate"] == 72
    assert stored["news2"]["total"] == 0
    news2 = (await client.get(f"/api/patients/{patient_id}/news2")).json()
    assert (news2["total"], news2["risk"], news2["missing"]) == (0, "low", [])


async def test_a_batch_is_accepted_and_duplicates_are_processed_once(
    client: httpx.AsyncClient,
) -> None:
    patient_id, key = await admit_with_device(client)
    first = await post_readings(client, "mon-1", key, [{"ts": at(i), **NORMAL} for i in range(5)])
    assert first.json()["accepted"] == 5
    # the device resends two old readings (lost ack) and repeats one within the request
    again = await post_readings(
        client,
        "mon-1",
        key,
        [{"ts": at(i), **NORMAL} for i in (3, 4, 5, 5)],
    )
    assert again.status_code == 202
    assert again.json() == {"accepted": 1, "duplicates": 3, "rejected": 0, "rejections": []}
    await wait_for_vitals(client, patient_id, 6)
    assert await vitals_count(client, patient_id) == 6


async def test_out_of_range_readings_go_to_quarantine_and_the_rest_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    patient_id, key = await admit_with_device(client)
    response = await post_readings(
        client,
        "mon-1",
        key,
        [{"ts": at(0), **NORMAL}, {"ts": at(1), **NORMAL, "heart_rate": 301}],
    )
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["rejections"][0]["index"] == 1
    assert body["rejections"][0]["field"] == "heart_rate"
    assert body["rejections"][0]["reason"] == "out_of_range"
    [held] = await quarantine(client)
    assert (held["device_id"], held["reason"], held["patient_id"]) == (
        "mon-1",
        "out_of_range",
        patient_id,
    )
    assert held["reading"]["heart_rate"] == 301
    await wait_for_vitals(client, patient_id, 1)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"heart_rate": 301}, "heart_rate"),
        ({"heart_rate": -1}, "heart_rate"),
        ({"spo2": 101}, "spo2"),
        ({"temperature": 50}, "temperature"),
        ({"systolic_bp": 80, "diastolic_bp": 90}, "diastolic_bp"),
    ],
)
async def test_a_request_of_only_bad_readings_is_refused_with_422_and_quarantined(
    client: httpx.AsyncClient, bad: dict[str, Any], field: str
) -> None:
    patient_id, key = await admit_with_device(client)
    response = await post_readings(client, "mon-1", key, [{"ts": at(0), **NORMAL, **bad}])
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["field"] == f"readings.0.{field}"
    assert [q["field"] for q in await quarantine(client)] == [field]
    assert await vitals_count(client, patient_id) == 0


async def test_a_reading_from_the_future_is_quarantined(client: httpx.AsyncClient) -> None:
    _, key = await admit_with_device(client)
    response = await post_readings(client, "mon-1", key, [{"ts": "2999-01-01T00:00:00Z", **NORMAL}])
    assert response.status_code == 422
    assert [q["reason"] for q in await quarantine(client)] == ["in_future"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Device-Key": "wrong"}, {"X-Device-Key": ""}, {"X-Device-Key": "x" * 201}],
    ids=["missing", "wrong", "empty", "too-long"],
)
async def test_a_wrong_or_missing_key_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    patient_id, _ = await admit_with_device(client)
    response = await client.post(
        "/api/devices/mon-1/telemetry", json={"ts": at(0), **NORMAL}, headers=headers
    )
    assert response.status_code in (401, 422)
    assert response.headers["content-type"] == PROBLEM
    assert await quarantine(client) == []
    assert await vitals_count(client, patient_id) == 0


async def test_a_device_cannot_post_as_another_device(client: httpx.AsyncClient) -> None:
    first_patient, first_key = await admit_with_device(client, "mon-1")
    second_patient, _ = await admit_with_device(client, "mon-2")
    response = await client.post(
        "/api/devices/mon-2/telemetry",
        json={"ts": at(0), **NORMAL},
        headers={"X-Device-Key": first_key},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "DeviceKey"
    assert await vitals_count(client, first_patient) == 0
    assert await vitals_count(client, second_patient) == 0


async def test_an_unknown_device_gets_the_same_answer_as_a_wrong_key(
    client: httpx.AsyncClient,
) -> None:
    _, key = await admit_with_device(client)
    unknown = await client.post(
        "/api/devices/nobody/telemetry", json={"ts": at(0), **NORMAL}, headers={"X-Device-Key": key}
    )
    wrong = await client.post(
        "/api/devices/mon-1/telemetry", json={"ts": at(0), **NORMAL}, headers={"X-Device-Key": "x"}
    )
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"]


async def test_an_unbound_device_is_refused_and_its_readings_quarantined(
    client: httpx.AsyncClient,
) -> None:
    patient_id, key = await admit_with_device(client)
    assert (await client.delete("/api/devices/mon-1/binding")).status_code == 200
    response = await post_readings(client, "mon-1", key, [{"ts": at(0), **NORMAL}])
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/device-unbound"
    held = await quarantine(client)
    assert [(q["reason"], q["patient_id"]) for q in held] == [("device_unbound", None)]
    assert await vitals_count(client, patient_id) == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 422),
        (b'"text"', 422),
        (b"{}", 422),
        (b'{"ts": "2026-11-25T09:00:00"}', 422),  # no timezone
        (b'{"ts": "yesterday", "heart_rate": 70}', 422),
        (b'{"ts": "2026-11-25T09:00:00Z", "heart_rate": "70"}', 422),
        (b'{"ts": "2026-11-25T09:00:00Z", "heart_rate": true}', 422),
        (b'{"ts": "2026-11-25T09:00:00Z", "heart_rate": NaN}', 422),
        (b'{"ts": "2026-11-25T09:00:00Z", "consciousness": "X"}', 422),
        (b'{"ts": "2026-11-25T09:00:00Z", "spo2": 97, "spo2_scale": 3}', 422),
        (b'{"ts": "2026-11-25T09:00:00Z", "on_oxygen": "yes"}', 422),
        (b'{"ts": "2026-11-25T09:00:00Z", "heart_rate": 70, "colour": "red"}', 422),
        (b'{"readings": []}', 422),
        (b'{"readings": {"ts": "2026-11-25T09:00:00Z"}}', 422),
        (b'{"readings": [{"ts": "2026-11-25T09:00:00Z", "heart_rate": 70}], "x": 1}', 422),
    ],
)
async def test_malformed_bodies_get_a_problem_and_change_nothing(
    client: httpx.AsyncClient, body: bytes, status: int
) -> None:
    patient_id, key = await admit_with_device(client)
    response = await client.post(
        "/api/devices/mon-1/telemetry",
        content=body,
        headers={"X-Device-Key": key, "Content-Type": "application/json"},
    )
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    assert await quarantine(client) == []
    assert await vitals_count(client, patient_id) == 0


async def test_more_than_1000_readings_are_refused(client: httpx.AsyncClient) -> None:
    patient_id, key = await admit_with_device(client)
    readings = [{"ts": at(i), "heart_rate": 70} for i in range(1001)]
    response = await post_readings(client, "mon-1", key, readings)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "readings"
    assert await vitals_count(client, patient_id) == 0


async def test_1000_readings_are_accepted(client: httpx.AsyncClient) -> None:
    patient_id, key = await admit_with_device(client)
    readings = [{"ts": at(i), "heart_rate": 70} for i in range(1000)]
    response = await post_readings(client, "mon-1", key, readings)
    assert response.status_code == 202
    assert response.json()["accepted"] == 1000
    # handling all of them takes a while on SQLite; that they flow at all is what counts here
    await wait_for_vitals(client, patient_id, 1)


async def test_a_10_mb_payload_is_refused_with_413(client: httpx.AsyncClient) -> None:
    patient_id, key = await admit_with_device(client)
    response = await client.post(
        "/api/devices/mon-1/telemetry",
        content=b'{"readings": [' + b" " * 10_000_000 + b"]}",
        headers={"X-Device-Key": key, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert await vitals_count(client, patient_id) == 0


@pytest.mark.parametrize("device_id", ["a%2Fb", "dev+1", "x" * 129])
async def test_device_ids_outside_the_naming_rules_are_refused(
    client: httpx.AsyncClient, device_id: str
) -> None:
    response = await client.post(
        f"/api/devices/{device_id}/telemetry",
        json={"ts": at(0), **NORMAL},
        headers={"X-Device-Key": "k"},
    )
    assert response.status_code in (404, 422)
    assert response.headers["content-type"] == PROBLEM


@pytest.fixture
async def stalled_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    """An app whose telemetry relay is not running: accepted readings wait in the backlog."""
    application = build_app(make_settings(telemetry_backlog_limit=2))
    async with application.router.lifespan_context(application):
        for task in application.state.platform._tasks:
            if task.get_name() == "telemetry-relay":
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        yield application


@pytest.fixture
async def stalled_client(stalled_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=stalled_app, raise_app_exceptions=False)
    admin = {"Authorization": f"Bearer {mint_token(stalled_app, 'admin')}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=admin
    ) as client:
        yield client


async def test_a_full_backlog_answers_503_with_retry_after(
    stalled_app: FastAPI, stalled_client: httpx.AsyncClient
) -> None:
    client = stalled_client
    _, key = await admit_with_device(client)
    ok = await post_readings(client, "mon-1", key, [{"ts": at(0)} | NORMAL, {"ts": at(1)} | NORMAL])
    assert ok.status_code == 202
    busy = await post_readings(client, "mon-1", key, [{"ts": at(2), **NORMAL}])
    assert busy.status_code == 503
    assert busy.headers["content-type"] == PROBLEM
    assert int(busy.headers["retry-after"]) > 0
    # a full intake refuses before it reads the body: not even a broken one is parsed
    unread = await client.post(
        "/api/devices/mon-1/telemetry",
        content=b"{not json",
        headers={"X-Device-Key": key, "Content-Type": "application/json"},
    )
    assert unread.status_code == 503
    assert await backlog(stalled_app) == 2
    assert await quarantine(client) == []


async def test_a_batch_out_of_time_order_is_scored_in_time_order(
    client: httpx.AsyncClient,
) -> None:
    patient_id, key = await admit_with_device(client)
    readings = [{"ts": at(i), **NORMAL} for i in (4, 2, 0, 3, 1)]
    assert (await post_readings(client, "mon-1", key, readings)).json()["accepted"] == 5
    stored = await wait_for_vitals(client, patient_id, 5)
    assert all(item["news2"] is not None for item in stored)


async def test_refusals_are_counted_in_the_metrics(client: httpx.AsyncClient) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    quarantined = sample("healthflow_telemetry_quarantined_total", reason="out_of_range")
    auth_failed = sample(
        "healthflow_telemetry_refused_total", transport="http", reason="auth_failed"
    )
    _, key = await admit_with_device(client)
    await post_readings(client, "mon-1", key, [{"ts": at(0), **NORMAL, "spo2": 101}])
    await post_readings(client, "mon-1", "wrong", [{"ts": at(0), **NORMAL}])
    assert (
        sample("healthflow_telemetry_quarantined_total", reason="out_of_range") == quarantined + 1
    )
    assert (
        sample("healthflow_telemetry_refused_total", transport="http", reason="auth_failed")
        == auth_failed + 1
    )
    exposed = (await client.get("/metrics")).text
    assert 'healthflow_telemetry_quarantined_total{reason="out_of_range"}' in exposed


# POST /api/telemetry/messages: the worker's MQTT subscriber relaying what it took from the broker


def relayed(device_id: str, key: str | None, body: dict[str, Any]) -> dict[str, Any]:
    return {"device_id": device_id, "device_key": key, "body": body}


async def relay(client: httpx.AsyncClient, *messages: dict[str, Any]) -> httpx.Response:
    return await client.post("/api/telemetry/messages", json={"messages": list(messages)})


async def test_relayed_messages_are_each_checked_by_their_key_and_answered_in_order(
    client: httpx.AsyncClient,
) -> None:
    first, key1 = await admit_with_device(client, "mon-1")
    second, key2 = await admit_with_device(client, "mon-2")

    answer = await relay(
        client,
        relayed("mon-1", key1, {"ts": at(0), **NORMAL}),
        relayed("mon-2", key2, {"readings": [{"ts": at(0), **NORMAL}, {"ts": at(1), **NORMAL}]}),
        relayed("mon-1", key2, {"ts": at(1), **NORMAL}),  # another device's key
        relayed("mon-1", None, {"ts": at(1), **NORMAL}),
        relayed("ghost", key1, {"ts": at(1), **NORMAL}),
        relayed("mon-1", key1, {"ts": at(1), "pulse": 70}),
        relayed("mon-2", key2, {"ts": at(2), "spo2": 101}),
        relayed("a?b", key1, {"ts": at(1), **NORMAL}),
        relayed("mon-1", key1, {"ts": at(2), **NORMAL}),
        relayed("mon-1", key1, {"ts": at(0), **NORMAL}),  # a repeat is stored once
    )

    assert answer.status_code == 200, answer.text
    outcomes = [r["outcome"] for r in answer.json()["results"]]
    assert outcomes == [
        "stored",
        "stored",
        "auth_failed",
        "auth_failed",
        "auth_failed",
        "invalid",
        "quarantined",
        "invalid",
        "stored",
        "stored",
    ]
    assert "pulse" in answer.json()["results"][5]["detail"]
    assert len(await wait_for_vitals(client, first, 2)) == 2
    assert len(await wait_for_vitals(client, second, 2)) == 2
    assert [q["reason"] for q in await quarantine(client)] == ["out_of_range"]


async def test_a_full_intake_answers_busy_for_every_message_and_takes_none(
    stalled_app: FastAPI, stalled_client: httpx.AsyncClient
) -> None:
    client = stalled_client
    _, key = await admit_with_device(client)
    first = await relay(
        client,
        relayed("mon-1", key, {"readings": [{"ts": at(0), **NORMAL}, {"ts": at(1), **NORMAL}]}),
    )
    assert [r["outcome"] for r in first.json()["results"]] == ["stored"]
    # the backlog is at its limit: a call's messages are stored together or not at all
    answer = await relay(
        client,
        relayed("mon-1", key, {"ts": at(2), **NORMAL}),
        relayed("mon-1", "wrong", {"ts": at(3), **NORMAL}),
        relayed("a?b", key, {"ts": at(3), **NORMAL}),
    )

    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["outcome"] for r in results] == ["busy", "busy", "invalid"]
    assert all(r["retry_after_s"] > 0 for r in results[:2])
    assert await backlog(stalled_app) == 2  # the busy ones were not taken


@pytest.mark.parametrize("role", ["clinician", "nurse", "analyst", None])
async def test_only_services_may_relay_device_messages(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_client: Callable[..., httpx.AsyncClient],
    role: str | None,
) -> None:
    patient_id, key = await admit_with_device(client)
    # the device's own key in the message is no pass: the route wants a service token
    answer = await relay(make_client(role), relayed("mon-1", key, {"ts": at(0), **NORMAL}))

    assert answer.status_code == (403 if role else 401)
    assert answer.headers["content-type"] == PROBLEM
    assert await vitals_count(client, patient_id) == 0
    assert await backlog(app) == 0


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{not json", 400),
        (b'{"messages": []}', 422),
        (b'{"messages": [{"device_id": "mon-1", "body": []}]}', 422),
        (b'{"messages": [{"device_id": "mon-1", "body": {}, "extra": 1}]}', 422),
        (
            b'{"messages": [' + b",".join([b'{"device_id": "mon-1", "body": {}}'] * 501) + b"]}",
            422,
        ),
    ],
)
async def test_a_malformed_relay_gets_a_problem_and_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, content: bytes, status: int
) -> None:
    patient_id, _ = await admit_with_device(client)
    answer = await client.post(
        "/api/telemetry/messages", content=content, headers={"content-type": "application/json"}
    )

    assert answer.status_code == status
    assert answer.headers["content-type"] == PROBLEM
    assert await vitals_count(client, patient_id) == 0
    assert await backlog(app) == 0


async def test_readings_relayed_in_several_batches_at_once_are_scored_in_order(
    make_settings: Callable[..., Settings],
) -> None:
    # batches of 3 readings, up to 4 in flight, into a worker queue of 2: the relay's batches
    # wait for room side by side, and the patient's readings must still be handled in order
    settings = make_settings(
        outbox_batch_size=3, outbox_max_in_flight=4, worker_queue_size=2, worker_count=1
    )
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {mint_token(app, 'admin')}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as client:
            patient_id, key = await admit_with_device(client)
            sent = await post_readings(
                client, "mon-1", key, [{"ts": at(i), **NORMAL} for i in range(60)]
            )
            assert sent.json()["accepted"] == 60
            stored = await wait_for_vitals(client, patient_id, 60)
    # a reading handled after a later one of its patient is stored but not scored
    assert [item["news2"] is not None for item in stored] == [True] * 60
