"""The dashboard's development sign-in: demo tokens, for this machine only, never with an issuer."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from healthflow.app import build_app
from healthflow.settings import Settings
from tests.conftest import mint_token


async def test_a_local_demo_sign_in_returns_a_token_that_works_for_its_role(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    anonymous = make_client(None)
    signed = await anonymous.post(
        "/api/dev/sign-in", json={"sub": "nina", "role": "nurse", "ward": "A"}
    )
    assert signed.status_code == 200
    token = signed.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await anonymous.get("/api/patients?ward=A", headers=headers)).status_code == 200
    assert (await anonymous.get("/api/patients?ward=B", headers=headers)).status_code == 403
    assert (await anonymous.get("/api/audit", headers=headers)).status_code == 403


@pytest.mark.parametrize(
    "body", [{"role": "device"}, {"role": "service"}, {"role": "root"}, {"role": "admin", "x": 1}]
)
async def test_only_demo_roles_can_be_signed_in(
    make_client: Callable[..., httpx.AsyncClient], body: dict[str, object]
) -> None:
    response = await make_client(None).post("/api/dev/sign-in", json=body)
    assert response.status_code == 422


async def test_a_remote_caller_cannot_sign_in(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.post("/api/dev/sign-in", json={"role": "admin"})
    assert response.status_code == 403
    assert "access_token" not in response.text


async def test_there_is_no_dev_sign_in_with_an_identity_provider(
    make_settings: Callable[..., Settings],
) -> None:
    app = build_app(make_settings(auth_jwks_url="http://127.0.0.1:9/keys"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.post("/api/dev/sign-in", json={"role": "admin"})
    assert response.status_code == 403
    assert "identity provider" in response.json()["detail"]


async def test_the_sign_in_config_names_the_development_sign_in_by_default(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    response = await make_client(None).get("/api/auth/config")
    assert response.status_code == 200
    assert response.json() == {"mode": "development", "oidc": None}


async def test_the_sign_in_config_says_when_the_dashboard_has_no_client_id(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        auth_jwks_url="http://127.0.0.1:9/keys", auth_issuer="https://login.example.test/t/v2.0"
    )
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.get("/api/auth/config")
            page = await http.get("/health")
    assert response.json() == {
        "mode": "oidc",
        "oidc": {
            "issuer": "https://login.example.test/t/v2.0",
            "client_id": None,
            "scope": "openid profile",
        },
    }
    assert (
        "connect-src 'self' https://login.example.test ws:"
        in page.headers["content-security-policy"]
    )


async def test_the_session_says_who_the_token_names(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    response = await make_client("nurse", sub="nina", ward="A&E").get("/api/auth/session")
    assert response.status_code == 200
    nurse = response.json()
    assert (nurse["subject"], nurse["roles"], nurse["ward"]) == ("nina", ["nurse"], "A&E")
    admin = (await make_client("admin", sub="ada").get("/api/auth/session")).json()
    assert (admin["subject"], admin["roles"], admin["ward"]) == ("ada", ["admin"], None)


@pytest.mark.parametrize(
    ("role", "may", "may_not"),
    [
        ("nurse", ["PUT /api/patients/{patient_id}/status", "GET /ws"], ["POST /api/patients"]),
        ("clinician", ["POST /api/patients", "GET /api/quarantine"], ["GET /api/audit"]),
        ("admin", ["GET /api/audit", "POST /api/patients"], []),
    ],
)
async def test_the_session_lists_what_the_role_may_call(
    make_client: Callable[..., httpx.AsyncClient], role: str, may: list[str], may_not: list[str]
) -> None:
    permissions = (await make_client(role).get("/api/auth/session")).json()["permissions"]
    assert set(may) <= set(permissions)
    assert not set(may_not) & set(permissions)


async def test_the_analyst_session_offers_the_dashboard_and_nothing_with_patients(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    session = (await make_client("analyst").get("/api/auth/session")).json()
    assert session["permissions"] == ["GET /api/analytics/dashboard", "GET /api/auth/session"]


async def test_the_session_leaves_out_public_routes(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    # anyone may call them: listing them would say nothing about the role
    permissions = (await make_client("admin").get("/api/auth/session")).json()["permissions"]
    assert "GET /health" not in permissions
    assert "POST /api/devices/{device_id}/telemetry" not in permissions


@pytest.mark.parametrize("role", [None, "expired", "device"])
async def test_the_session_refuses_a_missing_expired_or_device_token(
    app: FastAPI, make_client: Callable[..., httpx.AsyncClient], role: str | None
) -> None:
    if role == "expired":  # an hour past its end: beyond any clock leeway
        token = mint_token(app, "nurse", ward="A", ttl_s=-3600)
        http = make_client(None)
        response = await http.get("/api/auth/session", headers={"Authorization": f"Bearer {token}"})
    else:
        response = await make_client(role).get("/api/auth/session")
    assert response.status_code == (403 if role == "device" else 401)
    assert response.headers["content-type"] == "application/problem+json"
