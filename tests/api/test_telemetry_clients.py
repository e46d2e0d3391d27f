"""The worker's HTTP adapters of the telemetry ports (vitals/clients.py) against the real
services, here the one-process app over ASGI: what each answer becomes, which are final."""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from healthflow.circuit_breaker import CircuitBreaker
from healthflow.service_calls import (
    ServiceCaller,
    ServiceRefused,
    ServiceUnavailable,
    service_client,
)
from healthflow.vitals.clients import (
    HttpAssessor,
    HttpCriticalStatus,
    HttpDeviceMessages,
    IntakeUnavailable,
)
from healthflow.vitals.domain import DeviceAuthFailed
from healthflow.vitals.events import RecordedReading, reading_from_dict
from healthflow.vitals.ports import CriticalRefused, DeviceMessage, MessageRefused
from tests.conftest import auth_headers, patient_body
from tests.telemetry_support import CRITICAL, NORMAL, admit_with_device, at, wait_for_vitals


def caller(
    app: FastAPI, name: str, role: str = "service", sent: list[str] | None = None
) -> ServiceCaller:
    """How the worker reaches a service: its own (service) token, retries, a breaker; the path
    of every request it sends goes into `sent`, if given."""

    async def record(request: httpx.Request) -> None:
        if sent is not None:
            sent.append(request.url.path)

    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers=auth_headers(app, role),
        event_hooks={"request": [record]},
    )
    breaker = CircuitBreaker(name, failures=5, reset_s=60)
    return ServiceCaller(name, client, breaker, attempts=2, max_wait_s=0.01)


def intake(
    app: FastAPI, *, role: str | None = "service", max_body_bytes: int = 1_048_576
) -> tuple[HttpDeviceMessages, list[tuple[str, int]]]:
    """The MQTT bridge's client, with the worker's service token, and the path and body size of
    every call it makes."""
    sent: list[tuple[str, int]] = []

    async def record(request: httpx.Request) -> None:
        sent.append((request.url.path, len(request.content)))

    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers=auth_headers(app, role) if role else {},
        event_hooks={"request": [record]},
    )
    return HttpDeviceMessages(client, max_body_bytes=max_body_bytes), sent


def reading(patient_id: str, second: int, ward: str | None = "ICU") -> RecordedReading:
    """A critical reading, as the intake would have put it in its event."""
    values = reading_from_dict({"ts": at(second), **CRITICAL})
    return RecordedReading(str(uuid4()), "mon-1", UUID(patient_id), values, values.ts, ward)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


async def test_the_assessor_answers_with_the_critical_move_once_and_again_on_a_repeat(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
    assessor = HttpAssessor(caller(app, "analytics"))
    first_reading = reading(patient_id, 0)

    [first] = await assessor.assess_many([first_reading])
    [again] = await assessor.assess_many([first_reading])
    [later] = await assessor.assess_many([reading(patient_id, 1)])

    assert first.first and not again.first and later.first
    assert first.critical is not None
    assert first.critical.reason.endswith("(high risk)")
    assert again.critical == first.critical
    assert later.critical is None  # the same alert, updated: no second move


async def test_the_assessor_hands_in_what_the_worker_took_in_few_calls_and_answers_in_order(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
    calls: list[str] = []
    analytics = caller(app, "analytics", sent=calls)
    monkeypatch.setattr("healthflow.vitals.clients.ASSESS_CHUNK", 2)
    readings = [reading(patient_id, n) for n in range(5)]

    assessed = await HttpAssessor(analytics).assess_many([*readings, readings[0]])

    assert calls == ["/api/analytics/vitals/batch"] * 3  # 6 readings in calls of at most 2
    assert [a.first for a in assessed] == [True] * 5 + [False]
    assert assessed[0].critical is not None  # raised as critical by the first reading
    assert [a.critical for a in assessed[1:5]] == [None] * 4  # then updated, no second move
    assert assessed[5].critical == assessed[0].critical  # a repeat asks again
    await wait_for_vitals(client, patient_id, 5)


async def test_the_assessor_does_not_take_a_refusal_as_done(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    unknown = str(uuid4())  # no ward in the event and no such patient: 404, retried by the bus
    with pytest.raises(ServiceRefused) as refused:
        await HttpAssessor(caller(app, "analytics")).assess_many([reading(unknown, 0, ward=None)])
    assert refused.value.status_code == 404
    with pytest.raises(ServiceRefused) as forbidden:  # a token without the service role
        await HttpAssessor(caller(app, "analytics", role="nurse")).assess_many(
            [reading(unknown, 0)]
        )
    assert forbidden.value.status_code == 403


async def test_the_critical_move_happens_once_per_alert(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
    critical = HttpCriticalStatus(caller(app, "patients"))
    alert = uuid4()

    await critical.mark_critical(
        UUID(patient_id), reason="NEWS2 9 (high risk)", source="news2", alert_id=alert
    )
    await client.put(f"/api/patients/{patient_id}/status", json={"status": "admitted"})
    await critical.mark_critical(
        UUID(patient_id), reason="NEWS2 9 (high risk)", source="news2", alert_id=alert
    )

    assert (await client.get(f"/api/patients/{patient_id}")).json()["status"] == "admitted"
    history = (await client.get(f"/api/patients/{patient_id}/events")).json()["items"]
    assert [e["type"] for e in history].count("PatientCritical") == 1


async def test_a_patient_who_cannot_become_critical_is_a_final_refusal(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
    await client.put(f"/api/patients/{patient_id}/status", json={"status": "discharged"})
    critical = HttpCriticalStatus(caller(app, "patients"))

    with pytest.raises(CriticalRefused):
        await critical.mark_critical(UUID(patient_id), reason="r", source="news2", alert_id=uuid4())
    with pytest.raises(CriticalRefused):
        await critical.mark_critical(uuid4(), reason="r", source="news2", alert_id=uuid4())


async def test_a_relayed_device_message_is_stored_with_the_devices_own_key(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    patient_id, key = await admit_with_device(client, "mon-1")
    relay, _ = intake(app)
    await relay.submit("mon-1", key, {"ts": at(0), **NORMAL})
    await wait_for_vitals(client, patient_id, 1)


async def relay_all(
    relay: HttpDeviceMessages, messages: list[DeviceMessage], form: str
) -> list[object]:
    """The messages handed in as the subscriber does (one batch) or one by one, concurrently."""
    if form == "batch":
        return list(await relay.submit_many(messages))
    return await asyncio.gather(
        *(relay.submit(m.device_id, m.key, m.body) for m in messages), return_exceptions=True
    )


@pytest.mark.parametrize("form", ["batch", "one by one"])
async def test_messages_handed_in_together_are_relayed_in_one_call_each_with_its_outcome(
    app: FastAPI, client: httpx.AsyncClient, form: str
) -> None:
    devices = [await admit_with_device(client, f"mon-{i}") for i in range(3)]
    relay, sent = intake(app)
    messages = [
        DeviceMessage(f"mon-{i}", key, {"ts": at(0), **NORMAL})
        for i, (_, key) in enumerate(devices)
    ]
    messages.insert(1, DeviceMessage("mon-0", "wrong", {"ts": at(1), **NORMAL}))

    outcomes = await relay_all(relay, messages, form)

    assert [outcomes[0], outcomes[2], outcomes[3]] == [None, None, None]
    assert isinstance(outcomes[1], DeviceAuthFailed)
    assert [path for path, _ in sent] == ["/api/telemetry/messages"]
    for patient_id, _ in devices:
        await wait_for_vitals(client, patient_id, 1)


async def test_messages_beyond_the_body_limit_are_relayed_in_several_calls(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    patient_id, key = await admit_with_device(client, "mon-1")
    relay, sent = intake(app, max_body_bytes=700)  # two or three messages a call

    await asyncio.gather(*(relay.submit("mon-1", key, {"ts": at(k), **NORMAL}) for k in range(6)))

    assert 2 <= len(sent) < 6
    assert all(size <= 700 for _, size in sent)
    assert len(await wait_for_vitals(client, patient_id, 6)) == 6


@pytest.mark.parametrize("form", ["batch", "one by one"])
async def test_a_relay_the_intake_refuses_as_a_whole_is_tried_again_not_dropped(
    app: FastAPI, client: httpx.AsyncClient, form: str
) -> None:
    patient_id, key = await admit_with_device(client, "mon-1")
    relay, _ = intake(app, role=None)  # no service token: 401 for the call, not the message
    messages = [DeviceMessage("mon-1", key, {"ts": at(k), **NORMAL}) for k in range(3)]

    if form == "batch":
        with pytest.raises(IntakeUnavailable):
            await relay.submit_many(messages)
    else:
        outcomes = await relay_all(relay, messages, form)
        assert all(isinstance(o, IntakeUnavailable) for o in outcomes)
    assert (await client.get(f"/api/patients/{patient_id}/vitals")).json()["items"] == []


@pytest.mark.parametrize(
    ("device_id", "key", "body", "refusal", "reason"),
    [
        ("mon-1", "wrong", {"ts": "{ts}", **NORMAL}, DeviceAuthFailed, None),
        ("mon-1", None, {"ts": "{ts}", **NORMAL}, DeviceAuthFailed, None),
        ("ghost", "{key}", {"ts": "{ts}", **NORMAL}, DeviceAuthFailed, None),
        ("mon-1", "{key}", {"ts": "{ts}", "pulse": 70}, MessageRefused, "invalid"),
        ("mon-1", "{key}", {"ts": "{ts}", "spo2": 101}, MessageRefused, "quarantined"),
        ("a?b", "{key}", {"ts": "{ts}", **NORMAL}, MessageRefused, "invalid"),
    ],
)
async def test_a_relayed_device_message_that_is_refused_is_a_final_answer(
    app: FastAPI,
    client: httpx.AsyncClient,
    device_id: str,
    key: str | None,
    body: dict[str, Any],
    refusal: type[Exception],
    reason: str | None,
) -> None:
    patient_id, real_key = await admit_with_device(client, "mon-1")
    names = {"{key}": real_key, "{ts}": at(0)}
    message = {k: names.get(v, v) if isinstance(v, str) else v for k, v in body.items()}

    relay, _ = intake(app)
    with pytest.raises(refusal) as refused:
        await relay.submit(device_id, names.get(key, key) if key else None, message)

    if reason is not None:
        assert isinstance(refused.value, MessageRefused)
        assert refused.value.reason == reason
    assert (await client.get(f"/api/patients/{patient_id}/vitals")).json()["items"] == []


async def test_an_intake_that_cannot_be_reached_means_try_again() -> None:
    unreachable = HttpDeviceMessages(
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{closed_port()}"), max_body_bytes=1_048_576
    )
    with pytest.raises(IntakeUnavailable):
        await unreachable.submit("mon-1", "key", {"ts": at(0), "heart_rate": 70})


async def test_an_unreachable_service_fails_after_its_attempts_and_opens_the_circuit() -> None:
    breaker = CircuitBreaker("analytics", failures=2, reset_s=60)
    down = ServiceCaller(
        "analytics",
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{closed_port()}"),
        breaker,
        attempts=2,
        max_wait_s=0.01,
    )
    with pytest.raises(ServiceUnavailable):
        await down.send("POST", "/api/analytics/vitals", content=b"{}")
    assert breaker.state == "open"


@pytest.mark.parametrize(
    "answer",
    [
        b'{"results": []}',  # fewer outcomes than messages
        b'{"outcomes": [{"outcome": "stored"}]}',
        b'{"results": [{"outcome": "stored"}, {"outcome": "stored"}]}',
        b"not json",
    ],
)
async def test_an_answer_the_relay_cannot_read_means_try_again_for_every_message(
    answer: bytes,
) -> None:
    """An intake of another version, on a real socket: 200, but no outcome per message."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(answer), answer)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = service_client(
        f"http://127.0.0.1:{port}", timeout_s=5, max_connections=2, keepalive_s=2
    )
    relay = HttpDeviceMessages(client, max_body_bytes=1_048_576)
    try:
        with pytest.raises(IntakeUnavailable):
            await asyncio.wait_for(relay.submit("mon-1", "key", {"ts": at(0), "heart_rate": 70}), 5)
    finally:
        await client.aclose()
        server.close()
