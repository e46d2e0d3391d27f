"""Liveness, readiness and metrics."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from healthflow.ports import Check


async def test_liveness_answers_without_dependencies(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "alive"}


async def test_readiness_reports_every_dependency(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "healthy"
    checks = body["checks"]
    assert {"database", "event_bus", "analytics_store", "outbox", "worker_queue"} <= checks.keys()
    assert checks["database"]["status"] == "up"
    assert checks["outbox"] == {"pending": 0, "oldest_age_s": 0.0}
    assert checks["worker_queue"]["capacity"] == 1000


async def test_readiness_is_503_when_a_critical_dependency_is_down(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async def down() -> Check:
        return Check(False, {"error": "ConnectionRefusedError"})

    app.state.readiness.critical["analytics_store"] = down
    response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert response.json()["checks"]["analytics_store"]["status"] == "down"


async def test_readiness_degrades_when_the_worker_queue_is_nearly_full(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    app.state.readiness.queue = lambda: {"depth": 950, "capacity": 1000, "busy": 4}
    body = (await client.get("/health/ready")).json()
    assert body["status"] == "degraded"


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "healthflow_http_requests_total" in response.text
    assert 'route="/health"' in response.text


async def test_metrics_can_be_asked_for_by_sample_name(client: httpx.AsyncClient) -> None:
    # Prometheus's `name[]` filter: a poller asking for two samples gets those families alone
    await client.get("/health")
    names = ["healthflow_http_requests_total", "python_gc_collections_total"]
    text = (await client.get("/metrics", params={"name[]": names})).text
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert families == {"healthflow_http_requests_total", "python_gc_collections_total"}
    assert 'route="/health"' in text
    # the same collector's other samples, not asked for, are left out
    assert "python_gc_objects_collected_total" not in text
    unknown = await client.get("/metrics", params={"name[]": "no_such_metric"})
    assert unknown.status_code == 200 and unknown.text == ""
    everything = (await client.get("/metrics")).text
    assert everything.count("# TYPE") > 10 * len(families)


async def test_readiness_is_503_not_500_when_the_outbox_cannot_be_read(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    class BrokenOutbox:
        async def stats(self) -> None:
            raise ConnectionError("database gone")

    app.state.readiness.outbox = BrokenOutbox()
    response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["outbox"]["status"] == "unknown"
