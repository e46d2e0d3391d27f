"""The gateway's readiness: every service's own `/health/ready`, asked at once, summed up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from healthflow.gateway.proxy import Upstream
from healthflow.ports import Check

_RANK = {"healthy": 0, "degraded": 1, "unhealthy": 2}


async def service_readiness(upstream: Upstream) -> Check:
    """One service's readiness as a Check; unreachable or unhealthy is down."""
    try:
        answer = await upstream.client.get("/health/ready")
        body: dict[str, Any] = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        return Check(False, {"error": type(exc).__name__})
    status = str(body.get("status", "unhealthy"))
    return Check(
        answer.status_code == 200, {"service_status": status, "checks": body.get("checks", {})}
    )


class GatewayReadiness:
    """Readiness for the gateway role: the worst status among its services wins."""

    def __init__(
        self,
        upstreams: list[Upstream],
        *,
        local: dict[str, Callable[[], Awaitable[Check]]] | None = None,
    ) -> None:
        self._upstreams = upstreams
        self._local = local or {}

    async def report(self) -> tuple[str, dict[str, Any]]:
        results = await asyncio.gather(*(service_readiness(u) for u in self._upstreams))
        local = await asyncio.gather(*(check() for check in self._local.values()))
        checks: dict[str, Any] = {}
        worst = "healthy"
        for name, check in zip(self._local, local, strict=True):
            checks[name] = {"status": "up" if check.up else "down", **check.detail}
            if not check.up:
                worst = "unhealthy"
        for upstream, check in zip(self._upstreams, results, strict=True):
            status = str(check.detail.get("service_status", "unhealthy")) if check.up else "down"
            checks[upstream.name] = {
                "status": "up" if check.up else "down",
                "readiness": status,
                **{k: v for k, v in check.detail.items() if k != "service_status"},
            }
            level = "unhealthy" if not check.up else status
            if _RANK.get(level, 2) > _RANK[worst]:
                worst = level if level in _RANK else "unhealthy"
        return worst, checks
