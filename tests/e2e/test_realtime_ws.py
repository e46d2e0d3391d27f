"""`/ws` against a real uvicorn server with real WebSocket clients (protocol: docs/realtime.md)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.requests import HTTPConnection

from healthflow.realtime.access import LiveAccessDenied
from healthflow.realtime.fanout import TopicFilter
from healthflow.realtime.uvicorn_ws import FrameWritingProtocol
from healthflow.settings import Settings
from tests.conftest import eventually, patient_body
from tests.e2e.live import dropped_clients, now, patient_data, serving, ws_client

pytestmark = pytest.mark.e2e
QUIET = {"hub_metrics_interval_s": 3600.0}
# How the server sends: the hub's protocol writing pre-encoded frames (what `healthflow serve`
# runs), or plain uvicorn, where every frame goes through an ASGI send (any other server).
WRITERS = pytest.mark.parametrize("ws_options", [None, {}], ids=["frames-to-socket", "asgi-send"])


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages]


def kinds(messages: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(m["type"], m["topic"], m["data"].get("patient_id", "")) for m in messages]


async def test_each_client_gets_only_its_topics_each_message_once(
    make_settings: Callable[..., Settings],
) -> None:
    async with (
        serving(make_settings(**QUIET)) as server,
        httpx.AsyncClient(base_url=server.http, headers=server.auth) as http,
        ws_client(server.ws) as everyone,
        ws_client(server.ws) as icu,
        ws_client(server.ws) as alerts,
        ws_client(server.ws) as both,
        ws_client(server.ws) as one_patient,
    ):
        await everyone.subscribe("patients")
        await icu.subscribe("ward:ICU")
        await alerts.subscribe("alerts")
        ack = await both.subscribe("patients", "ward:ICU")
        assert ack["topics"] == ["patients", "ward:ICU"]
        p1 = (await http.post("/api/patients", json=patient_body(ward="ICU"))).json()["id"]
        p2 = (await http.post("/api/patients", json=patient_body(ward="B2"))).json()["id"]
        await one_patient.subscribe(f"patient:{p2}")
        moved = await http.put(f"/api/patients/{p2}/status", json={"status": "in_treatment"})
        assert moved.status_code == 200
        await server.hub.broadcast("AlertRaised", patient_data("ICU", p1, severity="high"), now())
        await server.hub.broadcast("AlertRaised", patient_data("B2", p2, severity="low"), now())

        assert kinds(await everyone.fence()) == [
            ("PatientCreated", "patients", p1),
            ("PatientCreated", "patients", p2),
            ("PatientStatusUpdated", "patients", p2),
        ]
        assert kinds(await icu.fence()) == [
            ("PatientCreated", "ward:ICU", p1),
            ("AlertRaised", "ward:ICU", p1),
        ]
        assert kinds(await alerts.fence()) == [
            ("AlertRaised", "alerts", p1),
            ("AlertRaised", "alerts", p2),
        ]
        assert kinds(await both.fence()) == [
            ("PatientCreated", "patients", p1),
            ("PatientCreated", "patients", p2),
            ("PatientStatusUpdated", "patients", p2),
            ("AlertRaised", "ward:ICU", p1),
        ]
        assert kinds(await one_patient.fence()) == [
            ("PatientStatusUpdated", f"patient:{p2}", p2),
            ("AlertRaised", f"patient:{p2}", p2),
        ]
        # one stream: every client sees the same seq for the same message
        assert seqs(everyone.messages)[:2] == seqs(both.messages)[:2]
        assert everyone.messages[0]["seq"] == icu.messages[0]["seq"]


@WRITERS
async def test_messages_arrive_in_publish_order_with_seq_up_by_one(
    make_settings: Callable[..., Settings], ws_options: dict[str, Any] | None
) -> None:
    async with (
        serving(make_settings(**QUIET), ws_options) as server,
        ws_client(server.ws) as client,
    ):
        ack = await client.subscribe("ward:ICU")
        expected_sink = ws_options is None
        assert [c.sink is not None for c in server.hub.fanout.connections] == [expected_sink]
        for n in range(300):
            await server.hub.broadcast("PatientStatusUpdated", patient_data("ICU", n=n), now())
        received = await client.until_seq(ack["head"] + 300)
        assert seqs(received) == list(range(ack["head"] + 1, ack["head"] + 301))
        assert [m["data"]["n"] for m in received] == list(range(300))


async def test_concurrent_registrations_get_distinct_increasing_seqs(
    make_settings: Callable[..., Settings],
) -> None:
    async with (
        serving(make_settings(**QUIET)) as server,
        httpx.AsyncClient(base_url=server.http, headers=server.auth) as http,
        ws_client(server.ws) as client,
    ):
        await client.subscribe("patients")
        replies = await asyncio.gather(
            *(http.post("/api/patients", json=patient_body(ward=f"W{n}")) for n in range(20))
        )
        assert all(r.status_code == 201 for r in replies)
        received = await client.fence()
        assert len(received) == 20
        assert seqs(received) == sorted(set(seqs(received)))
        assert {m["data"]["patient_id"] for m in received} == {r.json()["id"] for r in replies}


@WRITERS
async def test_resume_after_forced_disconnect_has_no_gap_and_no_duplicate(
    make_settings: Callable[..., Settings], ws_options: dict[str, Any] | None
) -> None:
    async with serving(make_settings(**QUIET), ws_options) as server:
        hub = server.hub
        async with ws_client(server.ws) as first:
            await first.subscribe("ward:ICU")
            for n in range(10):
                await hub.broadcast("PatientStatusUpdated", patient_data("ICU", n=n), now())
                await hub.broadcast("PatientStatusUpdated", patient_data("B2", n=n), now())
            before = (await first.fence())[:4]  # the client only got to handle four of them
            first.ws.transport.abort()
        last_seen = before[-1]["seq"]
        for n in range(10, 15):
            await hub.broadcast("PatientStatusUpdated", patient_data("ICU", n=n), now())
            await hub.broadcast("PatientStatusUpdated", patient_data("B2", n=n), now())
        async with ws_client(server.ws) as again:
            await again.send(op="resume", after=last_seen, topics=["ward:ICU"])
            resumed = await again.next_control("Resumed")
            assert resumed["replayed"] == 11
            await hub.broadcast("PatientStatusUpdated", patient_data("ICU", n=15), now())
            after = await again.fence()
        got = before + after
        assert [m["data"]["n"] for m in got] == list(range(16))
        assert seqs(got) == sorted(set(seqs(got)))
        assert all(m["topic"] == "ward:ICU" for m in got)


async def test_resume_as_a_separate_op_after_subscribe_replays_in_order(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(**QUIET)) as server, ws_client(server.ws) as client:
        for n in range(5):
            await server.hub.broadcast("AlertRaised", patient_data("ICU", n=n), now())
        await client.subscribe("alerts")
        await client.send(op="resume", after=2)
        resumed = await client.next_control("Resumed")
        await server.hub.broadcast("AlertRaised", patient_data("ICU", n=5), now())
        got = await client.fence()
        assert resumed["replayed"] == 3
        assert seqs(got) == [3, 4, 5, 6]


async def test_resume_once_messages_flowed_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(**QUIET)) as server, ws_client(server.ws) as client:
        await client.subscribe("alerts")
        await server.hub.broadcast("AlertRaised", patient_data("ICU"), now())
        await client.fence()
        await client.send(op="resume", after=0)
        error = await client.next_control("Error")
        assert error["code"] == "resume_too_late"


async def test_too_far_behind_gets_resync_then_live_messages(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(hub_replay_size=5, **QUIET)) as server:
        for n in range(20):
            await server.hub.broadcast("AlertRaised", patient_data("ICU", n=n), now())
        async with ws_client(server.ws) as client:
            await client.send(op="resume", after=3, topics=["alerts"])
            resync = await client.next_control("Resync")
            assert resync["head"] == 20
            await server.hub.broadcast("AlertRaised", patient_data("ICU", n=20), now())
            assert seqs(await client.fence()) == [21]


async def test_resume_from_a_seq_the_stream_never_reached_gets_resync(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(**QUIET)) as server, ws_client(server.ws) as client:
        await server.hub.broadcast("AlertRaised", patient_data("ICU"), now())
        await client.send(op="resume", after=999, topics=["alerts"])
        assert (await client.next_control("Resync"))["head"] == 1


@WRITERS
async def test_slow_consumer_is_closed_4008_while_fast_client_gets_everything(
    make_settings: Callable[..., Settings], ws_options: dict[str, Any] | None
) -> None:
    settings = make_settings(hub_send_queue_size=32, **QUIET)
    async with serving(settings, ws_options) as server, ws_client(server.ws) as fast:
        # a client that stops reading: tiny receive window, no compression, no own pings
        slow_sock = socket.socket()
        slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow_sock.connect(("127.0.0.1", server.port))
        options: dict[str, Any] = {"max_queue": 1, "compression": None, "ping_interval": None}
        async with ws_client(server.ws, sock=slow_sock, **options) as slow:
            await fast.subscribe("patients")
            await slow.subscribe("patients")
            dropped_before = dropped_clients()
            pad = os.urandom(4096).hex()  # random, so no compression shrinks it
            for batch in range(500):
                for n in range(8):
                    data = patient_data("ICU", n=batch * 8 + n, pad=pad)
                    await server.hub.broadcast("PatientStatusUpdated", data, now())
                await fast.until_seq(server.hub.fanout.head)
                if dropped_clients() > dropped_before:
                    break
            assert dropped_clients() == dropped_before + 1, "the slow client was never dropped"
            # the hub keeps serving the fast client after dropping the slow one
            for _ in range(8):
                await server.hub.broadcast("PatientStatusUpdated", patient_data("ICU"), now())
            head = server.hub.fanout.head
            assert seqs(await fast.until_seq(head)) == list(range(1, head + 1))
            # the slow client reads at last: a gap-free prefix, then close code 4008
            assert await slow.read_until_closed() == 4008
            got = seqs(slow.messages)
            assert got == list(range(1, len(got) + 1))
            assert len(got) < head


async def test_bad_client_frames_get_errors_and_the_connection_stays_usable(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(**QUIET)) as server, ws_client(server.ws) as client:
        cases: list[tuple[str, str]] = [
            ("not json", "bad_json"),
            ("[1, 2]", "bad_json"),
            ('{"op": "dance"}', "bad_op"),
            ('{"op": "subscribe"}', "bad_topics"),
            ('{"op": "subscribe", "topics": []}', "bad_topics"),
            ('{"op": "subscribe", "topics": ["weather"]}', "bad_topics"),
            ('{"op": "subscribe", "topics": ["patient:not-a-uuid"]}', "bad_topics"),
            ('{"op": "subscribe", "topics": [42]}', "bad_topics"),
            ('{"op": "resume", "after": -1}', "bad_after"),
            ('{"op": "resume", "after": "7"}', "bad_after"),
            ('{"op": "resume", "after": true}', "bad_after"),
        ]
        for frame, code in cases:
            await client.ws.send(frame)
            assert (await client.next_control("Error"))["code"] == code, frame
        ack = await client.subscribe("alerts")
        assert ack["topics"] == ["alerts"]
        await server.hub.broadcast("AlertRaised", patient_data("ICU"), now())
        assert len(await client.fence()) == 1


async def test_unsubscribe_stops_a_topic(make_settings: Callable[..., Settings]) -> None:
    async with serving(make_settings(**QUIET)) as server, ws_client(server.ws) as client:
        await client.subscribe("alerts", "ward:ICU")
        await client.send(op="unsubscribe", topics=["alerts"])
        assert (await client.next_control("Subscribed"))["topics"] == ["ward:ICU"]
        await server.hub.broadcast("AlertRaised", patient_data("B2"), now())
        await server.hub.broadcast("AlertRaised", patient_data("ICU"), now())
        assert kinds(await client.fence())[0][1] == "ward:ICU"
        assert len(client.messages) == 1


async def test_a_client_that_never_answers_pings_is_closed_4010(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(hub_heartbeat_s=0.05, hub_idle_timeout_s=0.3, **QUIET)
    async with serving(settings) as server, ws_client(server.ws) as client:
        assert await client.read_until_closed() == 4010
        assert any(c["type"] == "Ping" for c in client.controls)


async def test_a_client_answering_pings_stays_connected(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(hub_heartbeat_s=0.1, hub_idle_timeout_s=1.5, **QUIET)
    async with serving(settings) as server, ws_client(server.ws) as client:
        await client.subscribe("alerts")
        pings = 0
        while pings < 30:  # twice the idle timeout
            await client.next_control("Ping")
            await client.send(op="pong")
            pings += 1
        await server.hub.broadcast("AlertRaised", patient_data("ICU"), now())
        assert len(await client.fence()) == 1


async def test_connections_beyond_capacity_are_refused_1013(
    make_settings: Callable[..., Settings],
) -> None:
    async with (
        serving(make_settings(hub_max_clients=1, **QUIET)) as server,
        ws_client(server.ws) as first,
    ):
        await first.subscribe("alerts")
        async with ws_client(server.ws) as second:
            assert await second.read_until_closed() == 1013
        async with httpx.AsyncClient(base_url=server.http, headers=server.auth) as http:
            refused = await http.get("/api/stream", params={"topics": "alerts"})
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"


async def test_vitals_are_coalesced_per_patient_but_alerts_never(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(hub_vitals_min_interval_s=1.0, **QUIET)
    async with serving(settings) as server, ws_client(server.ws) as client:
        await client.subscribe("ward:ICU")
        a, b = patient_data("ICU"), patient_data("ICU")
        for n in range(20):
            await server.hub.broadcast("VitalsUpdated", {**a, "n": n}, now())
            await server.hub.broadcast("VitalsUpdated", {**b, "n": n}, now())
            await server.hub.broadcast("AlertUpdated", {**a, "n": n}, now())

        async def both_latest_arrived() -> bool:
            await client.fence()
            latest = [
                m["data"]["n"]
                for m in client.messages
                if m["type"] == "VitalsUpdated" and m["data"]["n"] == 19
            ]
            return len(latest) == 2

        await eventually(both_latest_arrived)
        vitals = [m for m in client.messages if m["type"] == "VitalsUpdated"]
        for patient_id in (a["patient_id"], b["patient_id"]):
            ns = [m["data"]["n"] for m in vitals if m["data"]["patient_id"] == patient_id]
            assert ns == [0, 19]  # the first at once, then only the newest
        alerts = [m["data"]["n"] for m in client.messages if m["type"] == "AlertUpdated"]
        assert alerts == list(range(20))


async def test_metrics_updated_reports_the_platform(
    make_settings: Callable[..., Settings],
) -> None:
    async with (
        serving(make_settings(hub_metrics_interval_s=0.05)) as server,
        httpx.AsyncClient(base_url=server.http, headers=server.auth) as http,
        ws_client(server.ws) as client,
    ):
        await client.subscribe("metrics")
        await http.post("/api/patients", json=patient_body())

        async def counted_the_patient() -> bool:
            await client.fence()
            return any(
                m["type"] == "MetricsUpdated"
                and (m["data"]["patients_by_status"] or {}).get("registered") == 1
                for m in client.messages
            )

        await eventually(counted_the_patient)
        update = next(m for m in reversed(client.messages) if m["type"] == "MetricsUpdated")
        data = update["data"]
        assert update["topic"] == "metrics"
        assert data["connected_clients"] == 1
        assert data["worker_queue"]["capacity"] == server.app.state.platform.pool.capacity
        assert data["dead_letters"] == 0
        assert data["open_alerts_by_severity"] == {"urgent": 0, "critical": 0}
        assert set(data) >= {
            "events_in_per_s",
            "events_processed_per_s",
            "open_alerts_by_severity",
            "instance",
        }
        assert any(m["type"] == "EventProcessed" for m in client.messages)


async def test_the_access_hook_can_refuse_a_connection_or_filter_its_topics(
    make_settings: Callable[..., Settings],
) -> None:
    async def icu_only(connection: HTTPConnection) -> TopicFilter:
        if connection.query_params.get("token") != "nurse":
            raise LiveAccessDenied("no valid token")
        return lambda topic: topic == "ward:ICU"

    async with serving(make_settings(**QUIET)) as server:
        server.app.state.live_access = icu_only
        async with ws_client(server.ws) as stranger:
            assert await stranger.read_until_closed() == 4001
        async with ws_client(server.ws + "?token=nurse") as nurse:
            ack = await nurse.subscribe("ward:ICU", "ward:B2", "alerts")
            assert ack["topics"] == ["ward:ICU"]
            assert ack["refused"] == ["ward:B2", "alerts"]
            await server.hub.broadcast("AlertRaised", patient_data("B2"), now())
            await server.hub.broadcast("AlertRaised", patient_data("ICU"), now())
            assert kinds(await nurse.fence())[0][1] == "ward:ICU"
            assert len(nurse.messages) == 1
        async with httpx.AsyncClient(base_url=server.http, headers=server.auth) as http:
            unauthorized = await http.get("/api/stream", params={"topics": "ward:ICU"})
            forbidden = await http.get(
                "/api/stream", params={"topics": "ward:B2", "token": "nurse"}
            )
        assert unauthorized.status_code == 401
        assert forbidden.status_code == 403
        assert forbidden.headers["content-type"] == "application/problem+json"


async def test_a_compressed_connection_gets_its_frames_through_asgi_sends(
    make_settings: Callable[..., Settings],
) -> None:
    # permessage-deflate left on: pre-encoded frames would be invalid on such a connection
    options: dict[str, Any] = {"ws": FrameWritingProtocol}
    async with (
        serving(make_settings(**QUIET), options) as server,
        ws_client(server.ws, compression="deflate") as client,
    ):
        await client.subscribe("alerts")
        assert client.ws.protocol.extensions, "the client and server agreed on compression"
        assert [c.sink for c in server.hub.fanout.connections] == [None]
        for n in range(20):
            await server.hub.broadcast("AlertRaised", patient_data("ICU", n=n), now())
        got = await client.until_seq(20)
        assert [m["data"]["n"] for m in got] == list(range(20))


async def test_the_served_protocol_turns_compression_down_and_writes_frames_directly(
    make_settings: Callable[..., Settings],
) -> None:
    async with (
        serving(make_settings(**QUIET)) as server,
        ws_client(server.ws, compression="deflate") as client,
    ):
        await client.subscribe("alerts")
        assert client.ws.protocol.extensions == []
        assert [c.sink is not None for c in server.hub.fanout.connections] == [True]
        for n in range(20):
            await server.hub.broadcast("AlertRaised", patient_data("ICU", n=n), now())
        got = await client.until_seq(20)
        assert [m["data"]["n"] for m in got] == list(range(20))
