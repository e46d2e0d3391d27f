"""Liveness and readiness: `/health` answers from memory, `/health/ready` asks each dependency."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from healthflow.ports import Check, Clock, Outbox

router = APIRouter(tags=["health"])


@dataclass
class Readiness:
    """The dependencies a process needs, each a check; which are critical decides 503."""

    critical: dict[str, Callable[[], Awaitable[Check]]]
    outbox: Outbox | None
    queue: Callable[[], dict[str, int]] | None
    clock: Clock
    degraded_after_s: float
    # down makes the process `degraded`, not `unhealthy`: e.g. the MQTT broker, whose outage
    # must not take the gateway (which sums every service's readiness) out of service
    degrading: dict[str, Callable[[], Awaitable[Check]]] = field(default_factory=dict)

    async def report(self) -> tuple[str, dict[str, Any]]:
        names = list(self.critical)
        results = await asyncio.gather(*(self.critical[n]() for n in names))
        checks: dict[str, Any] = {
            n: {"status": "up" if r.up else "down", **r.detail}
            for n, r in zip(names, results, strict=True)
        }
        status = "healthy" if all(r.up for r in results) else "unhealthy"
        lesser = await asyncio.gather(*(check() for check in self.degrading.values()))
        for name, result in zip(self.degrading, lesser, strict=True):
            checks[name] = {"status": "up" if result.up else "down", **result.detail}
            if not result.up and status == "healthy":
                status = "degraded"
        if self.outbox is not None:
            try:
                stats = await self.outbox.stats()
            except Exception as exc:  # the database check above already says why
                checks["outbox"] = {"status": "unknown", "error": type(exc).__name__}
                status = "unhealthy"
            else:
                age = (
                    round((self.clock.now() - stats.oldest_created_at).total_seconds(), 3)
                    if stats.oldest_created_at
                    else 0.0
                )
                checks["outbox"] = {"pending": stats.pending, "oldest_age_s": age}
                if age > self.degraded_after_s and status == "healthy":
                    status = "degraded"
        if self.queue is not None:
            queue = self.queue()
            checks["worker_queue"] = queue
            if queue["depth"] >= 0.9 * queue["capacity"] and status == "healthy":
                status = "degraded"
        return status, checks


@router.get("/health")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health/ready")
async def ready(request: Request) -> JSONResponse:
    readiness: Readiness = request.app.state.readiness
    status, checks = await readiness.report()
    return JSONResponse(
        {"status": status, "checks": checks}, status_code=503 if status == "unhealthy" else 200
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Every metric, or only the samples named by `name[]` (Prometheus's own filter, as
    prometheus_client's exporters read it): only their collectors are asked, so a poller that
    wants two counters does not pay for rendering every route's histogram."""
    names = request.query_params.getlist("name[]")
    registry = REGISTRY.restricted_registry(names) if names else REGISTRY
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
