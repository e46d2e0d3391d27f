"""Live push is filtered by role: a ward nurse sees that ward, an analyst only aggregates."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from healthflow.security.live import topics_for
from healthflow.security.tokens import Principal
from tests.conftest import mint_token, patient_body


@pytest.mark.parametrize(
    ("roles", "ward", "topic", "allowed"),
    [
        ({"admin"}, None, "patients", True),
        ({"clinician"}, None, "ward:ED", True),
        ({"service"}, None, "alerts", True),
        ({"nurse"}, "ICU", "ward:ICU", True),
        ({"nurse"}, "ICU", "metrics", True),
        ({"nurse"}, "ICU", "ward:ED", False),
        ({"nurse"}, "ICU", "patients", False),
        ({"nurse"}, "ICU", "alerts", False),
        ({"nurse"}, "ICU", "patient:0190", False),
        ({"nurse"}, "A&E", "ward:A%26E", True),  # the ward's topic: the name %-encoded
        ({"nurse"}, "A&E", "ward:A", False),
        ({"nurse"}, None, "patients", True),
        ({"analyst"}, None, "metrics", True),
        ({"analyst"}, None, "patients", False),
        ({"analyst"}, None, "ward:ICU", False),
        ({"device"}, None, "metrics", False),
        (set(), None, "metrics", False),
    ],
)
def test_topics_each_role_may_see(
    roles: set[str], ward: str | None, topic: str, allowed: bool
) -> None:
    principal = Principal(subject="someone", roles=frozenset(roles), ward=ward)
    assert topics_for(principal)(topic) is allowed


async def _subscribed(ws: Any, topics: list[str]) -> dict[str, Any]:
    await ws.send_text(json.dumps({"op": "subscribe", "topics": topics}))
    while True:
        message: dict[str, Any] = json.loads(await ws.receive_text())
        if message.get("type") == "Subscribed":
            return message


async def test_a_ward_nurse_receives_only_her_wards_patients(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    token = mint_token(app, "nurse", ward="ICU")
    transport = ASGIWebSocketTransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
        aconnect_ws(f"http://testserver/ws?access_token={token}", http) as ws,
    ):
        answer = await _subscribed(ws, ["ward:ICU", "ward:ED", "patients", "alerts"])
        assert sorted(answer["refused"]) == ["alerts", "patients", "ward:ED"]
        await client.post("/api/patients", json=patient_body(ward="ED"))
        icu = (await client.post("/api/patients", json=patient_body(ward="ICU"))).json()
        while True:
            message = json.loads(await ws.receive_text())
            if message.get("type") == "PatientCreated":
                break
        assert message["topic"] == "ward:ICU"
        assert message["data"]["patient_id"] == icu["id"]  # the ED patient never came


async def test_a_nurse_of_a_ward_named_outside_the_plain_characters_gets_it_live(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    token = mint_token(app, "nurse", ward="A&E")
    transport = ASGIWebSocketTransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
        aconnect_ws(f"http://testserver/ws?access_token={token}", http) as ws,
    ):
        answer = await _subscribed(ws, ["ward:A%26E", "ward:A"])
        assert (answer["topics"], answer["refused"]) == (["ward:A%26E"], ["ward:A"])
        await client.post("/api/patients", json=patient_body(ward="A"))
        ae = (await client.post("/api/patients", json=patient_body(ward="A&E"))).json()
        while True:
            message = json.loads(await ws.receive_text())
            if message.get("type") == "PatientCreated":
                break
        assert message["topic"] == "ward:A%26E"
        assert message["data"]["patient_id"] == ae["id"]  # ward A's patient never came


async def test_an_analyst_cannot_open_the_live_socket_at_all(app: FastAPI) -> None:
    # the permission table keeps analysts to the HTTP dashboard; the topic filter is the backstop
    token = mint_token(app, "analyst")
    transport = ASGIWebSocketTransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        with pytest.raises(WebSocketDisconnect) as refused:
            async with aconnect_ws(f"http://testserver/ws?access_token={token}", http):
                pass
    assert refused.value.code == 4403
