"""Shared fixtures: settings on a temporary data dir, the ASGI app with its lifespan, a client."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from healthflow.app import build_app
from healthflow.security import audit as audit_schema
from healthflow.security.audit import SqlAuditTrail
from healthflow.security.crypto import FieldCipher, KeyRing
from healthflow.settings import Settings
from healthflow.storage.engine import Database


class SteppingClock:
    """A clock tests move by hand; it starts at a fixed instant."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 25, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "bus_retry_delays_s": (0.01, 0.02),
            "outbox_poll_interval_s": 0.05,
            "log_level": "warning",
        }
        return Settings(**{**base, **overrides})

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = build_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def mint_token(
    app: FastAPI, role: str, *, sub: str | None = None, ward: str | None = None, ttl_s: float = 3600
) -> str:
    """A development token for `role`, signed with the app's own secret."""
    minter = app.state.platform.security.dev_tokens
    assert minter is not None, "development tokens are off (an OIDC issuer is configured)"
    return str(
        minter.mint(
            sub or f"test-{role}",
            role,
            now=datetime.now(UTC),
            ttl=timedelta(seconds=ttl_s),
            ward=ward,
        )
    )


@pytest.fixture
async def make_client(app: FastAPI) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """Clients for other roles: `make_client("nurse", ward="A")`, or `make_client(None)`."""
    clients: list[httpx.AsyncClient] = []

    def make(role: str | None, **claims: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {mint_token(app, role, **claims)}"} if role else {}
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        http = httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)
        clients.append(http)
        return http

    yield make
    for http in clients:
        await http.aclose()


@pytest.fixture
async def client(make_client: Callable[..., httpx.AsyncClient]) -> httpx.AsyncClient:
    """An admin client: every route is open to it."""
    return make_client("admin")


async def eventually(
    predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Wait until an asynchronous condition holds; fail the test after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(interval)


async def subscribe(
    send: Callable[[str], Awaitable[None]],
    receive: Callable[[], Awaitable[str | bytes]],
    topics: list[str],
) -> None:
    """Subscribe a live-push client (any WebSocket library) and wait for the server's answer."""
    await send(json.dumps({"op": "subscribe", "topics": topics}))
    async with asyncio.timeout(10):
        while json.loads(await receive()).get("type") != "Subscribed":
            pass


def patient_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "given_name": "Ada",
        "family_name": "Lovelace",
        "birth_date": "1980-12-10",
        "sex": "female",
        "ward": "ICU",
    }
    body.update(overrides)
    return body


def auth_headers(app: FastAPI, role: str = "admin") -> dict[str, str]:
    """`Authorization` for a development token of `role` on this app."""
    return {"Authorization": f"Bearer {mint_token(app, role)}"}


def dev_headers(data_dir: Path, role: str = "admin") -> dict[str, str]:
    """`Authorization` for a server process whose data dir is `data_dir` (its secret is there)."""
    from healthflow.app import dev_tokens

    minter = dev_tokens(Settings(data_dir=data_dir))
    assert minter is not None, "development tokens are off (an OIDC issuer is configured)"
    token = minter.mint(f"test-{role}", role, now=datetime.now(UTC), ttl=timedelta(hours=2))
    return {"Authorization": f"Bearer {token}"}


def ephemeral_cipher() -> FieldCipher:
    """A PHI cipher with fresh random keys held in memory (no key file): for store-level tests."""
    ring = KeyRing(
        Path("/nonexistent/keys.json"), env_key=os.urandom(32), env_index_key=os.urandom(32)
    )
    return FieldCipher(ring)


async def audit_trail(db: Database, clock: Any = None) -> SqlAuditTrail:
    """The audit trail over `db`, its tables created: what SqlPatientStore writes into."""
    await db.create_schema(audit_schema.metadata)
    trail = SqlAuditTrail(db, clock or SteppingClock())
    await trail.prepare()
    return trail
