"""Each role of the split topology serves the routes of the data it owns, every one of them has a
permission entry (the gateway its own table: it only checks tokens and forwards), and every route
any role serves can be reached through the gateway."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Match

from healthflow.app import build_app
from healthflow.composition import served
from healthflow.security import api as audit_api
from healthflow.security.rbac import PERMISSIONS, Rule, declared_routes
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
        ("POST", "/api/alerts/{alert_id}/ack"),
        ("POST", "/api/devices"),
        ("GET", "/api/auth/session"),
        ("GET", "/api/auth/config"),
        ("GET", "/api/audit"),
        ("POST", "/api/dev/sign-in"),
    },
}


def role_app(role: str, make_settings: Callable[..., Settings], **overrides: Any) -> FastAPI:
    return build_app(make_settings(role=role, broker_url="amqp://unused/", **overrides))


def role_routes(role: str, make_settings: Callable[..., Settings]) -> set[tuple[str, str]]:
    return {k for k in declared_routes(role_app(role, make_settings)) if k[0] in CHECKED}


def permissions_of(app: FastAPI) -> Mapping[tuple[str, str], Rule]:
    table: Mapping[tuple[str, str], Rule] = app.state.guard.permissions
    return table


@pytest.mark.parametrize("role", ["gateway", "patients", "analytics", "worker"])
def test_every_route_of_a_role_has_a_permission_entry(
    role: str, make_settings: Callable[..., Settings]
) -> None:
    app = role_app(role, make_settings)
    assert set(declared_routes(app)) - set(permissions_of(app)) == set()


@pytest.mark.parametrize("role", ["gateway", "patients", "analytics", "worker"])
def test_each_role_serves_the_telemetry_routes_of_the_data_it_owns(
    role: str, make_settings: Callable[..., Settings]
) -> None:
    routes = role_routes(role, make_settings)
    assert OWNED[role] <= routes
    others = set().union(*(v for k, v in OWNED.items() if k not in (role, "gateway")))
    if role != "gateway":
        assert routes & others == set()


@pytest.mark.parametrize(
    "route", [("POST", "/api/devices/{device_id}/telemetry"), ("GET", "/api/auth/config")]
)
def test_what_is_public_at_the_service_passes_the_gateway_without_a_bearer_token(
    route: tuple[str, str], make_settings: Callable[..., Settings]
) -> None:
    rule = permissions_of(role_app("gateway", make_settings))[route]
    assert rule == PERMISSIONS[route]
    assert rule.public


def test_the_gateway_checks_its_own_routes_by_the_permission_table(
    make_settings: Callable[..., Settings],
) -> None:
    table = permissions_of(role_app("gateway", make_settings))
    for route in [("GET", "/ws"), ("GET", "/api/stream"), ("POST", "/api/dev/sign-in")]:
        assert table[route] == PERMISSIONS[route]


def test_both_services_that_serve_patient_data_keep_an_audit_trail(
    make_settings: Callable[..., Settings],
) -> None:
    for role in ("patients", "analytics"):
        assert ("GET", "/api/audit") in role_routes(role, make_settings)


# a process's own health: the gateway answers these with its own (readiness summed up)
PER_PROCESS = {("GET", "/health"), ("GET", "/health/ready"), ("GET", "/metrics")}
SOME_ID = "01890000-0000-7000-8000-000000000001"


def in_order(routes: Any) -> Iterator[Any]:
    """The app's routes in matching order, included routers opened up (they add no prefix)."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is None:
            yield route
            continue
        assert route.include_context.prefix == ""
        yield from in_order(original.routes)


def gateway_answer(gateway: FastAPI, method: str, path: str, kind: str) -> str | None:
    """Who answers this request at the gateway: "gateway" for its own routes, the service's
    name for a forwarded one, None when no route of the gateway takes it."""
    concrete = re.sub(r"\{\w+\}", SOME_ID, path)
    scope = {"type": kind, "method": method, "path": concrete, "root_path": ""}
    for route in in_order(gateway.router.routes):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            name: str = route.name
            return name.removeprefix("forward to ") if name.startswith("forward to ") else "gateway"
    return None


@pytest.mark.parametrize("role", ["patients", "analytics", "worker", "all"])
def test_every_route_a_role_serves_is_reachable_through_the_gateway(
    role: str, make_settings: Callable[..., Settings]
) -> None:
    gateway = role_app("gateway", make_settings)
    served = {r: declared_routes(role_app(r, make_settings)) for r in ("patients", "analytics")}
    unreachable = []
    for (method, path), kind in declared_routes(role_app(role, make_settings)).items():
        answered_by = gateway_answer(gateway, method, path, kind)
        if answered_by == "gateway":
            ok = declared_routes(gateway).get((method, path)) == kind
        else:
            ok = answered_by in served and (method, path) in served[answered_by]
        if not ok:
            unreachable.append((method, path, answered_by))
    assert unreachable == []


def test_the_gateway_answers_for_itself_only_its_health_live_push_and_dev_sign_in(
    make_settings: Callable[..., Settings],
) -> None:
    gateway = role_app("gateway", make_settings)
    routes = declared_routes(gateway)
    own = {k for k, kind in routes.items() if gateway_answer(gateway, *k, kind) == "gateway"}
    assert own == PER_PROCESS | {
        ("GET", "/ws"),
        ("GET", "/api/stream"),
        ("POST", "/api/dev/sign-in"),
    }


async def test_the_gateway_serves_the_dashboard_at_the_root(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>HealthFlow</title>")
    gateway = role_app("gateway", make_settings, web_dir=dist)
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        root = await client.get("/")
        client_route = await client.get("/patients/some-id")
        unknown_api = await client.get("/api/nothing-here")

    assert root.status_code == 200
    assert "HealthFlow" in root.text
    assert client_route.status_code == 200  # the dashboard's own routes: index.html
    assert unknown_api.status_code == 404
    assert unknown_api.headers["content-type"] == "application/problem+json"


def test_a_route_two_services_serve_needs_the_gateways_choice_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    both = {"patients": (audit_api.auth_router,), "analytics": (audit_api.auth_router,)}
    monkeypatch.setattr(served, "SERVICE_ROUTERS", both)

    twice = r"/api/auth/config'\) is served by \['patients', 'analytics'\]"
    with pytest.raises(ValueError, match=twice):
        served.forwarded_routes()
