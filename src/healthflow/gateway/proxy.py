"""Routes each public path to the service that owns its data, over pooled HTTP clients.

patients: `/api/patients*` (but vitals and NEWS2), `/api/devices*` (telemetry intake included),
`/api/quarantine`; analytics: `/api/analytics*`, `/api/patients/{id}/vitals`,
`/api/patients/{id}/news2`, `/api/news2`, `/api/alerts*` (docs/infrastructure.md,
docs/telemetry.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import structlog
from fastapi import APIRouter, Request, Response

from healthflow.http import problem

log = structlog.get_logger(__name__)

# RFC 9110 hop-by-hop fields, plus what httpx recomputes or has already decoded
_DROP_REQUEST = {
    "host",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
_DROP_RESPONSE = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "server",
    "date",
}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@dataclass(frozen=True)
class Upstream:
    """One service behind the gateway: its name and a pooled client bound to its base URL."""

    name: str
    client: httpx.AsyncClient


async def forward(upstream: Upstream, request: Request) -> Response:
    """Send the request on unchanged and hand back the service's answer, or a problem+json
    502/503/504 saying which service failed and how."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST}
    client_host = request.client.host if request.client else "unknown"
    headers["x-forwarded-for"] = ", ".join(
        p for p in (request.headers.get("x-forwarded-for"), client_host) if p
    )
    outgoing = upstream.client.build_request(
        request.method,
        request.url.path,
        params=request.url.query,
        headers=headers,
        content=await request.body(),
    )
    try:
        answer = await upstream.client.send(outgoing)
    except httpx.TimeoutException:
        log.warning("upstream_timeout", service=upstream.name, path=request.url.path)
        return problem(
            504,
            "Service timed out",
            f"The {upstream.name} service did not answer in time.",
            slug="upstream-timeout",
        )
    except httpx.ConnectError:
        log.warning("upstream_unreachable", service=upstream.name, path=request.url.path)
        return problem(
            503,
            "Service unavailable",
            f"The {upstream.name} service cannot be reached; try again shortly.",
            slug="upstream-unavailable",
            headers={"Retry-After": "5"},
        )
    except httpx.HTTPError as exc:
        log.warning("upstream_failed", service=upstream.name, error=repr(exc))
        return problem(
            502,
            "Bad gateway",
            f"The {upstream.name} service gave no usable answer.",
            slug="bad-gateway",
        )
    kept = {k: v for k, v in answer.headers.items() if k.lower() not in _DROP_RESPONSE}
    return Response(answer.content, status_code=answer.status_code, headers=kept)


def router(patients: Upstream, analytics: Upstream) -> APIRouter:
    routes = APIRouter(tags=["gateway"])

    # declared before the `/api/patients/{path}` catch-all: the first matching route wins
    @routes.get("/api/patients/{patient_id}/vitals", include_in_schema=False)
    @routes.get("/api/patients/{patient_id}/news2", include_in_schema=False)
    @routes.get("/api/news2", include_in_schema=False)
    @routes.api_route("/api/alerts", methods=METHODS, include_in_schema=False)
    @routes.api_route("/api/alerts/{path:path}", methods=METHODS, include_in_schema=False)
    async def to_monitor(request: Request) -> Response:
        return await forward(analytics, request)

    # devices carry no bearer token: this route has its own (public) permission entry, so it is
    # declared before the `/api/devices/{path}` catch-all that requires one
    @routes.post("/api/devices/{device_id}/telemetry", include_in_schema=False)
    async def to_telemetry_intake(request: Request) -> Response:
        return await forward(patients, request)

    @routes.api_route("/api/devices", methods=METHODS, include_in_schema=False)
    @routes.api_route("/api/devices/{path:path}", methods=METHODS, include_in_schema=False)
    @routes.api_route("/api/quarantine", methods=METHODS, include_in_schema=False)
    async def to_devices(request: Request) -> Response:
        return await forward(patients, request)

    @routes.api_route("/api/patients", methods=METHODS, include_in_schema=False)
    @routes.api_route("/api/patients/{path:path}", methods=METHODS, include_in_schema=False)
    async def to_patients(request: Request) -> Response:
        return await forward(patients, request)

    @routes.api_route("/api/analytics", methods=METHODS, include_in_schema=False)
    @routes.api_route("/api/analytics/{path:path}", methods=METHODS, include_in_schema=False)
    async def to_analytics(request: Request) -> Response:
        return await forward(analytics, request)

    return routes
