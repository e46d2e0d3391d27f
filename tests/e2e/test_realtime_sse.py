"""`GET /api/stream` (Server-Sent Events) against a real server: parity with `/ws`, resume."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import httpx
import pytest

from healthflow.settings import Settings
from tests.conftest import eventually
from tests.e2e.live import dropped_clients, now, patient_data, serving, sse_client, ws_client

pytestmark = pytest.mark.e2e
QUIET = {"hub_metrics_interval_s": 3600.0}


async def test_sse_carries_the_same_messages_as_the_websocket(
    make_settings: Callable[..., Settings],
) -> None:
    async with (
        serving(make_settings(**QUIET)) as server,
        ws_client(server.ws) as ws,
        sse_client(server.http, "ward:ICU,alerts") as sse,
    ):
        await ws.subscribe("ward:ICU", "alerts")
        _, ack = await sse.next_event()
        assert ack["type"] == "Subscribed"
        assert ack["topics"] == ["alerts", "ward:ICU"]
        for n in range(10):
            await server.hub.broadcast("PatientStatusUpdated", patient_data("ICU", n=n), now())
            await server.hub.broadcast("PatientStatusUpdated", patient_data("B2", n=n), now())
            await server.hub.broadcast("AlertRaised", patient_data("B2", n=n), now())
        head = server.hub.fanout.head
        over_ws = await ws.until_seq(head)
        over_sse = await sse.until_seq(head)
        assert len(over_ws) == 20
        assert over_sse == over_ws
        ids = [event_id for event_id, data in sse.events if "seq" in data]
        assert ids == [str(m["seq"]) for m in over_sse]


async def test_sse_resumes_after_last_event_id_without_gap_or_duplicate(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(**QUIET)) as server:
        hub = server.hub
        async with sse_client(server.http, "alerts") as sse:
            await sse.next_event()
            for n in range(5):
                await hub.broadcast("AlertRaised", patient_data("ICU", n=n), now())
            first = (await sse.until_seq(3))[:3]
        for n in range(5, 8):
            await hub.broadcast("AlertRaised", patient_data("ICU", n=n), now())
        last_id = str(first[-1]["seq"])
        async with sse_client(server.http, "alerts", {"Last-Event-ID": last_id}) as again:
            _, resumed = await again.next_event()
            assert resumed["type"] == "Resumed"
            assert resumed["replayed"] == 5
            await hub.broadcast("AlertRaised", patient_data("ICU", n=8), now())
            rest = await again.until_seq(hub.fanout.head)
        assert [m["data"]["n"] for m in first + rest] == list(range(9))

        async def all_streams_released() -> bool:
            return hub.fanout.clients == 0

        await eventually(all_streams_released)


async def test_sse_too_far_behind_gets_resync_with_the_head_as_its_id(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(hub_replay_size=3, **QUIET)) as server:
        for n in range(10):
            await server.hub.broadcast("AlertRaised", patient_data("ICU", n=n), now())
        async with sse_client(server.http, "alerts", {"Last-Event-ID": "2"}) as sse:
            event_id, resync = await sse.next_event()
            assert resync["type"] == "Resync"
            assert event_id == "10"
            assert resync["head"] == 10


@pytest.mark.parametrize(
    ("params", "headers", "status"),
    [
        ({}, {}, 422),
        ({"topics": ""}, {}, 400),
        ({"topics": "weather"}, {}, 400),
        ({"topics": "patients,ward:"}, {}, 400),
        ({"topics": "patient:123"}, {}, 400),
        ({"topics": "alerts", "after": "-1"}, {}, 422),
        ({"topics": "alerts", "after": "x"}, {}, 422),
        ({"topics": "alerts"}, {"Last-Event-ID": "abc"}, 400),
        ({"topics": "alerts"}, {"Last-Event-ID": "-4"}, 400),
        ({"topics": "alerts"}, {"Last-Event-ID": "9" * 40}, 400),
    ],
)
async def test_bad_stream_requests_get_problem_json_and_open_nothing(
    make_settings: Callable[..., Settings],
    params: dict[str, str],
    headers: dict[str, str],
    status: int,
) -> None:
    async with serving(make_settings(**QUIET)) as server:
        async with httpx.AsyncClient(base_url=server.http, headers=server.auth) as http:
            reply = await http.get("/api/stream", params=params, headers=headers)
        assert reply.status_code == status
        assert reply.headers["content-type"] == "application/problem+json"
        assert server.hub.fanout.clients == 0


async def test_a_stalled_sse_reader_is_cut_off_while_websocket_clients_keep_receiving(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(hub_send_queue_size=32, **QUIET)
    async with serving(settings) as server, ws_client(server.ws) as fast:
        await fast.subscribe("patients")
        # a raw HTTP client with a tiny receive window that stops reading after the request
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(
            b"GET /api/stream?topics=patients HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream"
            b"\r\nAuthorization: " + server.auth["Authorization"].encode() + b"\r\n\r\n"
        )

        async def streaming() -> bool:
            return server.hub.fanout.clients == 2

        await eventually(streaming)
        dropped_before = dropped_clients()
        pad = os.urandom(4096).hex()
        for batch in range(500):
            for n in range(8):
                data = patient_data("ICU", n=batch * 8 + n, pad=pad)
                await server.hub.broadcast("PatientStatusUpdated", data, now())
            await fast.until_seq(server.hub.fanout.head)
            if dropped_clients() > dropped_before:
                break
        assert dropped_clients() == dropped_before + 1, "the stalled stream was never dropped"
        head = server.hub.fanout.head
        assert [m["seq"] for m in fast.messages] == list(range(1, head + 1))
        stalled.close()

        async def released() -> bool:
            return server.hub.fanout.clients == 1

        await eventually(released)
