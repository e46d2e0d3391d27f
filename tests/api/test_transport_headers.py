"""Browser-facing protections: security headers on every answer, a strict CORS allow-list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from healthflow.app import build_app
from healthflow.security.rbac import PERMISSIONS, allow
from healthflow.settings import Settings
from tests.conftest import mint_token


async def test_every_answer_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    for path in ("/health", "/api/patients", "/api/nowhere"):
        headers = (await client.get(path)).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["strict-transport-security"].startswith("max-age=")
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]


async def test_api_answers_are_never_cached(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/patients")).headers["cache-control"] == "no-store"


async def test_the_api_docs_keep_working_without_the_strict_csp(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "content-security-policy" not in docs.headers


@pytest.fixture
async def cors_client(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(make_settings(cors_allow_origins=("https://ward.example.test",)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_only_listed_origins_get_cors_access(cors_client: httpx.AsyncClient) -> None:
    def preflight(origin: str) -> dict[str, str]:
        return {
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        }

    allowed = await cors_client.options(
        "/api/patients", headers=preflight("https://ward.example.test")
    )
    assert allowed.headers["access-control-allow-origin"] == "https://ward.example.test"
    refused = await cors_client.options("/api/patients", headers=preflight("https://evil.test"))
    assert "access-control-allow-origin" not in refused.headers


async def test_no_cors_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"Origin": "https://evil.test"})
    assert "access-control-allow-origin" not in response.headers


async def test_a_subject_over_its_budget_gets_429_with_retry_after(
    make_settings: Callable[..., Settings],
) -> None:
    app = build_app(make_settings(rate_limit_subject_per_minute=3))
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {mint_token(app, 'admin')}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as http:
            statuses = [(await http.get("/api/patients")).status_code for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
            refused = await http.get("/api/patients")
            assert refused.headers["content-type"] == "application/problem+json"
            assert int(refused.headers["retry-after"]) >= 1
            assert (await http.get("/health")).status_code == 200  # probes are never limited


async def test_the_services_own_calls_are_not_held_to_a_subjects_budget(
    make_settings: Callable[..., Settings],
) -> None:
    app = build_app(make_settings(rate_limit_subject_per_minute=2))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:

            async def post_as(role: str) -> int:
                headers = {"Authorization": f"Bearer {mint_token(app, role)}"}
                response = await http.post("/api/analytics/events", json={}, headers=headers)
                return response.status_code

            # past the guard, the empty body is refused: 422, never 429
            assert [await post_as("service") for _ in range(4)] == [422] * 4
            assert [await post_as("clinician") for _ in range(3)] == [403, 403, 429]


async def test_a_client_address_over_its_budget_gets_429_even_without_a_token(
    make_settings: Callable[..., Settings],
) -> None:
    app = build_app(make_settings(rate_limit_client_per_minute=2))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            statuses = [(await http.get("/api/patients")).status_code for _ in range(3)]
            assert statuses == [401, 401, 429]


async def test_a_request_without_an_answer_in_time_gets_504(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = build_app(make_settings(request_timeout_s=0.2))
    never = asyncio.Event()

    @app.get("/api/stuck")
    async def stuck() -> dict[str, str]:
        await never.wait()
        return {}

    monkeypatch.setitem(PERMISSIONS, ("GET", "/api/stuck"), allow())
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {mint_token(app, 'admin')}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as http:
            response = await http.get("/api/stuck")
            assert response.status_code == 504
            assert response.json()["type"] == "/problems/request-timeout"
            assert (await http.get("/api/patients")).status_code == 200
