"""Each role of the split topology serves the routes of the data it owns, and every one of them
has a permission entry (the gateway its own table: it only checks tokens and forwards)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.routing import Match

from healthflow.app import build_app
from healthflow.security.rbac import GATEWAY_PERMISSIONS, PERMISSIONS, declared_routes
from healthflow.settings import Settings

CHECKED = {"GET", "POST", "PUT", "PATCH", "DELETE"}  # HEAD/OPTIONS of the proxy: refused for all
OWNED = {
    "patients": {
        ("POST", "/api/devices"),
        ("GET", "/api/devices/{device_id}"),
        ("DELETE", "/api/devices/{device_id}/binding"),
        ("POST", "/api/devices/{device_id}/telemetry"),
        ("GET", "/api/quarantine"),
        ("POST", "/api/patients/{patient_id}/critical"),
    },
    "analytics": {
        ("POST", "/api/analytics/vitals"),
        ("GET", "/api/patients/{patient_id}/vitals"),
        ("GET", "/api/patients/{patient_id}/news2"),
        ("GET", "/api/news2"),
        ("GET", "/api/alerts"),
        ("POST", "/api/alerts/{alert_id}/ack"),
    },
    "worker": set(),
    "gateway": {
        ("POST", "/api/devices/{device_id}/telemetry"),
        ("GET", "/api/patients/{patient_id}/vitals"),
        ("GET", "/api/news2"),
        ("GET", "/api/alerts/{path:path}"),
        ("POST", "/api/devices/{path:path}"),
    },
}


def role_routes(role: str, make_settings: Callable[..., Settings]) -> set[tuple[str, str]]:
    app = build_app(make_settings(role=role, broker_url="amqp://unused/"))
    return {k for k in declared_routes(app) if k[0] in CHECKED}


@pytest.mark.parametrize("role", ["gateway", "patients", "analytics", "worker"])
def test_every_route_of_a_role_has_a_permission_entry(
    role: str, make_settings: Callable[..., Settings]
) -> None:
    table = GATEWAY_PERMISSIONS if role == "gateway" else PERMISSIONS
    assert role_routes(role, make_settings) - set(table) == set()


@pytest.mark.parametrize("role", ["gateway", "patients", "analytics", "worker"])
def test_each_role_serves_the_telemetry_routes_of_the_data_it_owns(
    role: str, make_settings: Callable[..., Settings]
) -> None:
    routes = role_routes(role, make_settings)
    assert OWNED[role] <= routes
    others = set().union(*(v for k, v in OWNED.items() if k not in (role, "gateway")))
    if role != "gateway":
        assert routes & others == set()


def test_devices_reach_the_gateway_without_a_bearer_token() -> None:
    rule = GATEWAY_PERMISSIONS[("POST", "/api/devices/{device_id}/telemetry")]
    assert rule == PERMISSIONS[("POST", "/api/devices/{device_id}/telemetry")]
    assert rule.device_key


def test_both_services_that_serve_patient_data_keep_an_audit_trail(
    make_settings: Callable[..., Settings],
) -> None:
    for role in ("patients", "analytics"):
        assert ("GET", "/api/audit") in role_routes(role, make_settings)


# the gateway's proxy endpoints and the service each forwards to (gateway/proxy.py)
FORWARDS_TO = {
    "to_monitor": "analytics",
    "to_analytics": "analytics",
    "to_telemetry_intake": "patients",
    "to_devices": "patients",
    "to_patients": "patients",
}
NOT_PROXIED = {"/api/audit"}  # each service's own chain: asked of the service directly


def in_order(routes: Any) -> Iterator[Any]:
    """The app's routes in matching order, included routers opened up (they add no prefix)."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is None:
            yield route
            continue
        assert route.include_context.prefix == ""
        yield from in_order(original.routes)


def gateway_target(app: Any, method: str, path: str) -> str | None:
    """The service the gateway forwards this request to: its first fully matching route's."""
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in in_order(app.router.routes):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return FORWARDS_TO.get(route.endpoint.__name__)
    return None


def test_the_gateway_forwards_every_api_route_to_the_role_that_serves_it(
    make_settings: Callable[..., Settings],
) -> None:
    gateway = build_app(make_settings(role="gateway", broker_url="amqp://unused/"))
    checked = 0
    for role in ("patients", "analytics"):
        for method, path in role_routes(role, make_settings):
            if not path.startswith("/api/") or path in NOT_PROXIED:
                continue
            concrete = re.sub(r"\{\w+\}", "01890000-0000-7000-8000-000000000001", path)
            assert gateway_target(gateway, method, concrete) == role, (method, path)
            checked += 1
    assert checked > 20
