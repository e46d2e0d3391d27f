"""OIDC sign-in end to end: a local identity provider (tests/oidc_provider.py), the dashboard's
authorization code flow with PKCE done over HTTP, and HealthFlow verifying the issued token
through its real JWKS path (fetched over HTTP from the provider)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from html import unescape
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from healthflow.app import build_app
from healthflow.settings import Settings
from tests.conftest import patient_body
from tests.oidc_provider import LocalIssuer
from tests.oidc_provider import build_app as build_provider

pytestmark = pytest.mark.e2e
CLIENT_ID = "healthflow-dashboard"


@asynccontextmanager
async def served(app: ASGIApp, sock: socket.socket) -> AsyncIterator[str]:
    """`app` under a real uvicorn on an already bound socket, in this event loop."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def bound() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


class Setup:
    def __init__(self, issuer: LocalIssuer, healthflow: str, redirect_uri: str) -> None:
        self.issuer = issuer
        self.healthflow = healthflow
        self.redirect_uri = redirect_uri


@pytest.fixture
async def setup(make_settings: Callable[..., Settings]) -> AsyncIterator[Setup]:
    idp_sock, app_sock = bound(), bound()
    idp_url = f"http://127.0.0.1:{idp_sock.getsockname()[1]}"
    redirect_uri = f"http://127.0.0.1:{app_sock.getsockname()[1]}/auth/callback"
    issuer = LocalIssuer(
        url=idp_url, client_id=CLIENT_ID, audience="healthflow", redirect_uris=(redirect_uri,)
    )
    settings = make_settings(
        auth_jwks_url=f"{idp_url}/jwks",
        auth_issuer=idp_url,
        auth_audience="healthflow",
        auth_client_id=CLIENT_ID,
    )
    async with (
        served(build_provider(issuer), idp_sock),
        served(build_app(settings), app_sock) as healthflow,
    ):
        yield Setup(issuer, healthflow, redirect_uri)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def sign_in(
    http: httpx.AsyncClient, setup: Setup, *, role: str = "clinician", ward: str = ""
) -> tuple[str, str]:
    """What the dashboard does: config, discovery, authorize (the form), then the token request
    with the verifier. Returns (authorization code, verifier) after checking the redirect."""
    config = (await http.get(f"{setup.healthflow}/api/auth/config")).json()
    assert config["mode"] == "oidc"
    oidc = config["oidc"]
    found = (await http.get(f"{oidc['issuer']}/.well-known/openid-configuration")).json()
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(8)
    page = await http.get(
        found["authorization_endpoint"],
        params={
            "response_type": "code",
            "client_id": oidc["client_id"],
            "redirect_uri": setup.redirect_uri,
            "scope": oidc["scope"],
            "state": state,
            "nonce": "n-1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert page.status_code == 200
    form = {
        name: unescape(value)
        for name, value in re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', page.text)
    }
    approved = await http.post(
        found["authorization_endpoint"],
        data={**form, "username": "dr-oidc", "role": role, "ward": ward},
    )
    assert approved.status_code == 302
    location = urlsplit(approved.headers["location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == setup.redirect_uri
    assert query["state"] == [state]
    return query["code"][0], verifier


async def redeem(http: httpx.AsyncClient, setup: Setup, code: str, verifier: str) -> httpx.Response:
    found = (await http.get(f"{setup.issuer.url}/.well-known/openid-configuration")).json()
    return await http.post(
        found["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": setup.redirect_uri,
            "client_id": CLIENT_ID,
            "code_verifier": verifier,
        },
    )


async def test_the_dashboard_signs_in_at_the_issuer_and_its_token_opens_the_api(
    setup: Setup,
) -> None:
    async with httpx.AsyncClient() as http:
        config = (await http.get(f"{setup.healthflow}/api/auth/config")).json()
        assert config == {
            "mode": "oidc",
            "oidc": {"issuer": setup.issuer.url, "client_id": CLIENT_ID, "scope": "openid profile"},
        }
        code, verifier = await sign_in(http, setup)
        tokens = await redeem(http, setup, code, verifier)
        assert tokens.status_code == 200, tokens.text
        bearer = {"Authorization": f"Bearer {tokens.json()['access_token']}"}

        created = await http.post(
            f"{setup.healthflow}/api/patients", json=patient_body(), headers=bearer
        )
        assert created.status_code == 201, created.text
        listed = await http.get(f"{setup.healthflow}/api/patients", headers=bearer)
        assert [p["id"] for p in listed.json()["items"]] == [created.json()["id"]]
        # the role comes from the issuer's claim: a clinician is not an admin
        assert (await http.get(f"{setup.healthflow}/api/audit", headers=bearer)).status_code == 403


async def test_the_page_may_call_the_issuer_and_nothing_else(setup: Setup) -> None:
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{setup.healthflow}/health")
    policy = page.headers["content-security-policy"]
    assert f"connect-src 'self' {setup.issuer.url} ws: wss:" in policy


async def test_a_code_works_once_and_only_with_its_verifier(setup: Setup) -> None:
    async with httpx.AsyncClient() as http:
        code, verifier = await sign_in(http, setup)
        wrong = await redeem(http, setup, code, pkce()[0])
        assert (wrong.status_code, wrong.json()) == (400, {"error": "invalid_grant"})
        # the failed attempt used the code up, as a real issuer would
        again = await redeem(http, setup, code, verifier)
        assert again.status_code == 400
        code, verifier = await sign_in(http, setup)
        assert (await redeem(http, setup, code, verifier)).status_code == 200
        assert (await redeem(http, setup, code, verifier)).status_code == 400
    assert setup.issuer.tokens_issued == 1


async def test_tokens_the_issuer_did_not_sign_or_meant_for_others_are_refused(
    setup: Setup,
) -> None:
    async with httpx.AsyncClient() as http:
        code, verifier = await sign_in(http, setup, role="admin")
        tokens = (await redeem(http, setup, code, verifier)).json()
        forged = LocalIssuer(
            url=setup.issuer.url,
            client_id=CLIENT_ID,
            audience="healthflow",
            redirect_uris=(),
            kid=setup.issuer.kid,  # same key id, different key: the signature gives it away
        )
        real = setup.issuer
        cases = {
            "the id token (audience: the client)": tokens["id_token"],
            "signed with another key": forged.sign(_claims(real.url, "healthflow")),
            "for another audience": real.sign(_claims(real.url, "another-api")),
            "from another issuer": real.sign(_claims("http://evil.test", "healthflow")),
        }
        for name, token in cases.items():
            response = await http.get(
                f"{setup.healthflow}/api/patients", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 401, name
        good = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await http.get(f"{setup.healthflow}/api/audit", headers=good)).status_code == 200


async def test_with_an_issuer_there_is_no_development_sign_in(setup: Setup) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{setup.healthflow}/api/dev/sign-in", json={"role": "admin"})
    assert response.status_code == 403


def _claims(issuer: str, audience: str) -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": issuer,
        "aud": audience,
        "sub": "mallory",
        "roles": ["admin"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
