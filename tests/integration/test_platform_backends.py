"""The whole platform in one process (`--role all`) over the embedded default and over
PostgreSQL + RabbitMQ + Redis: the same flow must hold on both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from healthflow.app import build_app, migrate_databases
from healthflow.settings import Settings
from healthflow.storage.migrations import SchemaBehind
from tests.conftest import auth_headers, eventually, patient_body
from tests.integration.conftest import RABBIT_URL, REDIS_URL, Rabbit

pytestmark = pytest.mark.integration


@pytest.fixture(params=["embedded", "servers"])
def platform_settings(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> Settings:
    if request.param == "embedded":
        return make_settings()
    postgres_url: str = request.getfixturevalue("postgres_url")
    rabbit: Rabbit = request.getfixturevalue("rabbit")
    redis_prefix: str = request.getfixturevalue("redis_prefix")
    rabbit.groups.extend(["analytics", "vitals"])
    return make_settings(
        database_url=postgres_url,
        analytics_url=postgres_url,  # both schemas in one database: separate version tables
        broker_url=RABBIT_URL,
        broker_exchange=rabbit.exchange,
        cache_url=REDIS_URL,
        cache_prefix=redis_prefix,
        rate_limit_prefix=f"{redis_prefix}ratelimit:",
    )


@pytest.fixture
async def platform_client(platform_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    if platform_settings.database_url.startswith("postgresql"):
        await migrate_databases(platform_settings)  # the deploy step `healthflow db upgrade`
    app: FastAPI = build_app(platform_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=auth_headers(app)
        ) as client:
            yield client


async def dashboard(client: httpx.AsyncClient) -> dict[str, Any]:
    summary: dict[str, Any] = (await client.get("/api/analytics/dashboard")).json()
    return summary


async def test_registration_and_status_change_reach_the_dashboard(
    platform_client: httpx.AsyncClient,
) -> None:
    created = await platform_client.post("/api/patients", json=patient_body())
    patient_id = created.json()["id"]
    moved = await platform_client.put(
        f"/api/patients/{patient_id}/status", json={"status": "in_treatment", "reason": "seen"}
    )
    assert (created.status_code, moved.status_code) == (201, 200)

    async def both_processed() -> bool:
        return (await dashboard(platform_client))["events_processed_total"] == 2

    await eventually(both_processed)
    summary = await dashboard(platform_client)
    assert summary["patients_total"] == 1
    assert summary["patients_by_status"]["in_treatment"] == 1


async def test_a_patient_read_after_a_status_change_shows_the_new_status(
    platform_client: httpx.AsyncClient,
) -> None:
    patient_id = (await platform_client.post("/api/patients", json=patient_body())).json()["id"]
    await platform_client.get(f"/api/patients/{patient_id}")
    await platform_client.put(f"/api/patients/{patient_id}/status", json={"status": "waiting"})

    read = await platform_client.get(f"/api/patients/{patient_id}")

    assert read.json()["status"] == "waiting"


async def test_an_event_delivered_twice_is_counted_once(
    platform_client: httpx.AsyncClient,
) -> None:
    patient_id = (await platform_client.post("/api/patients", json=patient_body())).json()["id"]
    [event] = (await platform_client.get(f"/api/patients/{patient_id}/events")).json()["items"]

    async def processed() -> bool:
        return (await dashboard(platform_client))["events_processed_total"] == 1

    await eventually(processed)
    again = await platform_client.post("/api/analytics/events", json=event)

    assert again.json() == {"event_id": event["id"], "duplicate": True}
    summary = await dashboard(platform_client)
    assert (summary["patients_total"], summary["events_processed_total"]) == (1, 1)


async def test_an_invalid_event_is_refused_and_changes_nothing(
    platform_client: httpx.AsyncClient,
) -> None:
    refused = await platform_client.post("/api/analytics/events", json={"specversion": "1.0"})

    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await dashboard(platform_client))["events_processed_total"] == 0


async def test_readiness_names_the_backends_in_use(
    platform_client: httpx.AsyncClient, platform_settings: Settings
) -> None:
    ready = await platform_client.get("/health/ready")

    assert ready.status_code == 200
    checks = ready.json()["checks"]
    servers = platform_settings.broker_url.startswith("amqp")
    assert checks["database"]["backend"] == ("postgresql" if servers else "sqlite")
    assert checks["event_bus"]["backend"] == ("rabbitmq" if servers else "memory")
    assert ("cache" in checks) is servers


async def test_a_server_database_without_migrations_refuses_to_start(
    postgres_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(database_url=postgres_url, analytics_url=postgres_url)
    app = build_app(settings)
    with pytest.raises(SchemaBehind, match="healthflow db upgrade"):
        async with app.router.lifespan_context(app):
            pass


async def test_a_role_on_a_database_without_migrations_refuses_to_start(
    postgres_url: str, rabbit: Rabbit, make_settings: Callable[..., Settings]
) -> None:
    rabbit.groups.extend(["analytics", "vitals"])
    settings = make_settings(
        role="patients",
        database_url=postgres_url,
        broker_url=RABBIT_URL,
        broker_exchange=rabbit.exchange,
    )
    app = build_app(settings)
    with pytest.raises(SchemaBehind, match="healthflow db upgrade"):
        async with app.router.lifespan_context(app):
            pass
