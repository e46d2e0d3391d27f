"""Which routers each process of the split topology serves: the one list that the role apps
include and that the gateway's forwarding is read from, so a route a service serves cannot be
left unreachable through the gateway."""

from __future__ import annotations

from fastapi import APIRouter

from healthflow.analytics import api as analytics_api
from healthflow.observability import health
from healthflow.patients import api as patients_api
from healthflow.realtime import sse, websocket
from healthflow.security import api as audit_api
from healthflow.security.rbac import declared_routes
from healthflow.vitals import api as vitals_api
from healthflow.vitals import ingest_http

# the services' API, each router with the data it reads; the gateway forwards all of it
SERVICE_ROUTERS: dict[str, tuple[APIRouter, ...]] = {
    "patients": (
        patients_api.router,
        ingest_http.router,
        vitals_api.devices_router,
        audit_api.router,
        # sign-in config and session: the session lists the permissions the services enforce
        audit_api.auth_router,
    ),
    "analytics": (
        analytics_api.router,
        vitals_api.monitor_router,
        audit_api.router,
    ),
}

# served by more than one service: the gateway forwards to the one named here. Each service
# keeps its own audit chain; through the gateway an admin reads the patients service's (the
# analytics chain is asked of that service directly).
SHARED: dict[tuple[str, str], str] = {("GET", "/api/audit"): "patients"}

# answered by the gateway itself besides the health routes every process serves: live push from
# its own hub, and the development sign-in (its loopback check must see the real client, not
# the gateway's address)
GATEWAY_ROUTERS: tuple[APIRouter, ...] = (
    websocket.router,
    sse.router,
    audit_api.dev_router,
)


def forwarded_routes() -> dict[tuple[str, str], str]:
    """(method, path as declared) -> the service the gateway forwards it to."""
    servers: dict[tuple[str, str], list[str]] = {}
    for service, routers in SERVICE_ROUTERS.items():
        for router in routers:
            for key in declared_routes(router):
                servers.setdefault(key, []).append(service)
    table: dict[tuple[str, str], str] = {}
    for key, services in servers.items():
        if len(services) == 1:
            table[key] = services[0]
        elif SHARED.get(key) in services:
            table[key] = SHARED[key]
        else:
            raise ValueError(f"{key} is served by {services}: name the gateway's choice in SHARED")
    return table


def gateway_own_routes() -> set[tuple[str, str]]:
    """(method, path) the gateway answers itself: health, live push, development sign-in."""
    return {key for r in (health.router, *GATEWAY_ROUTERS) for key in declared_routes(r)}
