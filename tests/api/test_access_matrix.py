"""The permission table, enforced: every route x every role, without and with broken tokens."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from healthflow.security.rbac import PERMISSIONS, Role, Rule, declared_routes
from healthflow.settings import Settings
from tests.conftest import mint_token, patient_body

DEVICE_SUBJECT = "device-under-test"


def _fill(path: str, rule: Rule, patient_id: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == rule.own:
            return DEVICE_SUBJECT
        return patient_id if name == "patient_id" else "00000000-0000-7000-8000-000000000001"

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, path)


def _token(app: FastAPI, role: Role) -> str:
    sub = DEVICE_SUBJECT if role is Role.DEVICE else None
    return mint_token(app, role.value, sub=sub)


@pytest.fixture
async def patient_id(client: httpx.AsyncClient) -> str:
    created = await client.post("/api/patients", json=patient_body(ward="ICU"))
    assert created.status_code == 201
    return str(created.json()["id"])


def _http_routes(app: FastAPI) -> list[tuple[str, str]]:
    return sorted(k for k, kind in declared_routes(app).items() if kind == "http")


def _ws_routes(app: FastAPI) -> list[str]:
    return sorted(p for (_, p), kind in declared_routes(app).items() if kind == "websocket")


async def _call(http: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return await http.request(method, url, **body, **kw)


async def test_every_route_for_every_role_is_allowed_or_refused_as_the_table_says(
    app: FastAPI, make_client: Callable[..., httpx.AsyncClient], patient_id: str
) -> None:
    anonymous = make_client(None)
    checked = 0
    for method, path in _http_routes(app):
        rule = PERMISSIONS[(method, path)]
        url = _fill(path, rule, patient_id)
        anon = await _call(anonymous, method, url)
        if rule.device_key:
            continue  # no bearer token: the route checks X-Device-Key (tests/api/test_telemetry*)
        if rule.public:
            assert anon.status_code not in (401, 403), (method, path)
            continue
        assert anon.status_code == 401, (method, path)
        assert anon.headers["www-authenticate"].startswith("Bearer")
        assert anon.headers["content-type"] == "application/problem+json"
        for role in Role:
            headers = {"Authorization": f"Bearer {_token(app, role)}"}
            if role in rule.roles and rule.query_token:
                continue  # a stream (SSE) that is allowed never ends; refusals are still checked
            response = await _call(anonymous, method, url, headers=headers)
            if role in rule.roles:
                assert response.status_code not in (401, 403), (method, path, role, response.text)
            else:
                assert response.status_code == 403, (method, path, role, response.text)
                assert response.json()["type"] == "/problems/forbidden"
            checked += 1
    assert checked >= len(Role) * 5


def _broken_tokens(settings: Settings, app: FastAPI) -> dict[str, str]:
    secret = (settings.data_dir / "auth_secret").read_bytes().strip()
    now = datetime.now(UTC)
    good = {
        "sub": "someone",
        "iss": settings.auth_issuer,
        "aud": settings.auth_audience,
        "roles": ["admin"],
        "iat": now,
        "exp": now + timedelta(hours=1),
    }
    valid = mint_token(app, "admin")
    head, payload, signature = valid.split(".")
    return {
        "expired": jwt.encode({**good, "exp": now - timedelta(minutes=5)}, secret, "HS256"),
        "not yet valid": jwt.encode({**good, "nbf": now + timedelta(minutes=5)}, secret, "HS256"),
        "wrong audience": jwt.encode({**good, "aud": "another-app"}, secret, "HS256"),
        "wrong issuer": jwt.encode({**good, "iss": "https://evil.test"}, secret, "HS256"),
        "wrong key": jwt.encode(good, b"k" * 43, "HS256"),
        "bad signature": f"{head}.{payload}.{signature[:-4]}AAAA",
        "alg none": jwt.encode(good, None, "none"),
        "not a jwt": "hello",
    }


async def test_broken_tokens_get_401_on_every_protected_route(
    app: FastAPI,
    settings: Settings,
    make_client: Callable[..., httpx.AsyncClient],
    patient_id: str,
) -> None:
    http = make_client(None)
    for name, token in _broken_tokens(settings, app).items():
        for method, path in _http_routes(app):
            rule = PERMISSIONS[(method, path)]
            if rule.public:
                continue
            url = _fill(path, rule, patient_id)
            response = await _call(http, method, url, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, (name, method, path)


async def test_a_route_without_a_table_entry_is_refused_even_to_admin(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    @app.get("/api/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"leak": "yes"}

    response = await client.get("/api/forgotten")
    assert response.status_code == 403
    assert "no permission entry" in response.json()["detail"]


async def _ws_outcome(app: FastAPI, path: str, query: str) -> int | str:
    transport = ASGIWebSocketTransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        try:
            async with aconnect_ws(f"http://testserver{path}{query}", http):
                return "open"
        except WebSocketDisconnect as closed:
            return closed.code


async def test_every_websocket_route_for_every_role(app: FastAPI) -> None:
    ws_paths = _ws_routes(app)
    assert ws_paths, "the live-push WebSocket is in the walk"
    for path in ws_paths:
        rule = PERMISSIONS[("GET", path)]
        assert await _ws_outcome(app, path, "") == 4401
        assert await _ws_outcome(app, path, "?access_token=forged.token.here") == 4401
        for role in Role:
            outcome = await _ws_outcome(app, path, f"?access_token={_token(app, role)}")
            assert outcome == ("open" if role in rule.roles else 4403), (path, role)


@pytest.mark.parametrize("role", [Role.ADMIN, Role.CLINICIAN, Role.NURSE, Role.ANALYST])
async def test_the_session_lists_exactly_the_routes_the_guard_lets_the_role_call(
    app: FastAPI, make_client: Callable[..., httpx.AsyncClient], patient_id: str, role: Role
) -> None:
    # the dashboard offers what the session lists: a listed route must not answer 403, and an
    # unlisted one must, or the dashboard would hide what works or offer what is refused
    http = make_client(role.value)
    listed = set((await http.get("/api/auth/session")).json()["permissions"])
    for method, path in _http_routes(app):
        rule = PERMISSIONS[(method, path)]
        if rule.public or (f"{method} {path}" in listed and rule.query_token):
            continue  # public: anyone; an allowed stream (SSE) never ends
        response = await _call(http, method, _fill(path, rule, patient_id))
        assert (response.status_code != 403) == (f"{method} {path}" in listed), (method, path)
    for path in _ws_routes(app):
        outcome = await _ws_outcome(app, path, f"?access_token={_token(app, role)}")
        assert (outcome == "open") == (f"GET {path}" in listed), path
