"""Routes each public path to the service that serves it, over pooled HTTP clients.

Which service serves which route is read from the services' routers (composition/served.py;
docs/infrastructure.md, docs/telemetry.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
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


def router(forwards: Mapping[tuple[str, str], Upstream]) -> APIRouter:
    """One route per (method, path) a service serves, sending it to that service.

    The table is read from the services' own routers (composition/served.py), so the gateway
    knows exactly the routes behind it: any other path is answered 404 here, not forwarded.
    """
    routes = APIRouter(tags=["gateway"])
    by_path: dict[tuple[str, str], list[str]] = {}
    for (method, path), upstream in forwards.items():
        by_path.setdefault((path, upstream.name), []).append(method)
    upstreams = {u.name: u for u in forwards.values()}
    for (path, name), methods in by_path.items():
        routes.add_api_route(
            path,
            _forwarder(upstreams[name]),
            methods=methods,
            name=f"forward to {name}",
            include_in_schema=False,
        )
    return routes


def _forwarder(upstream: Upstream) -> Callable[[Request], Awaitable[Response]]:
    async def forward_request(request: Request) -> Response:
        return await forward(upstream, request)

    return forward_request
