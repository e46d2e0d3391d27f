"""Role-based access: the one permission table, and the guard every route passes through.

The guard is one FastAPI dependency installed on the whole app (app.py), so API modules stay
thin and a route cannot be added without deciding who may call it: a route missing from
PERMISSIONS is refused for everyone, and tests/unit/test_permission_table.py fails.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.requests import HTTPConnection

from healthflow.http import extend_openapi, route_template
from healthflow.http_edge import REQUEST_ID
from healthflow.ports import RequestBudget
from healthflow.security.audit import (
    DENIED,
    FAILURE,
    SUCCESS,
    Actor,
    AuditEntry,
    SqlAuditTrail,
    acting_as,
)
from healthflow.security.errors import Forbidden, Unauthenticated
from healthflow.security.tokens import InvalidToken, Principal, TokenVerifier

log = structlog.get_logger(__name__)


class Role(enum.StrEnum):
    ADMIN = "admin"  # everything, incl. audit and dead letters
    CLINICIAN = "clinician"  # read/write patients, ack alerts
    NURSE = "nurse"  # read patients and vitals, update status, ack alerts; own `ward` claim only
    ANALYST = "analyst"  # analytics dashboard and de-identified aggregates only
    DEVICE = "device"  # its own telemetry only
    SERVICE = "service"  # internal calls between HealthFlow services


class Audit(enum.StrEnum):
    NONE = "none"  # no patient data involved
    READ = "read"  # a PHI read: recorded by the guard once the route succeeded (or failed)
    WRITE = "write"  # a change: the store records success in the change's own transaction;
    # the guard records refusals and failures
    ACTION = "action"  # recorded by the guard whatever the outcome (admin actions, acks)


@dataclass(frozen=True)
class Rule:
    """Who may call one route, and how the call is audited."""

    roles: frozenset[Role]
    audit: Audit = Audit.NONE
    resource: str = ""  # audit resource type; the id comes from the route's `{..._id}` parameter
    ward_scoped: bool = False  # a nurse with a `ward` claim reaches only patients of that ward
    own: str | None = None  # path parameter a DEVICE caller's subject must equal
    query_token: bool = False  # also accept `?access_token=` (WebSocket and SSE: no headers)
    public: bool = False
    device_key: bool = False  # no bearer token: the route checks the device's own key


def allow(*roles: Role, **options: Any) -> Rule:
    """A rule for the given roles; admin may do everything, so it is always included."""
    return Rule(frozenset({Role.ADMIN, *roles}), **options)


PUBLIC = Rule(frozenset(), public=True)
# Devices never hold user tokens: the route authenticates them by `X-Device-Key` (telemetry).
DEVICE_KEY = Rule(frozenset({Role.DEVICE}), public=True, device_key=True)
A, C, N, AN, D, S = Role  # short names keep each table line on one line
READ, WRITE, ACTION = Audit.READ, Audit.WRITE, Audit.ACTION
PATIENT = {"resource": "patient", "ward_scoped": True}

# (method, route path as declared) -> rule. One line per route; README's table is generated
# from this (`healthflow permissions`) and checked against it by a test.
PERMISSIONS: dict[tuple[str, str], Rule] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("POST", "/api/patients"): allow(C, audit=WRITE, resource="patient"),
    ("GET", "/api/patients"): allow(C, N, audit=READ, **PATIENT),
    ("GET", "/api/patients/{patient_id}"): allow(C, N, audit=READ, **PATIENT),
    ("PUT", "/api/patients/{patient_id}/status"): allow(C, N, audit=WRITE, **PATIENT),
    ("POST", "/api/patients/{patient_id}/critical"): allow(C, N, S, audit=WRITE, **PATIENT),
    ("GET", "/api/patients/{patient_id}/events"): allow(C, N, audit=READ, **PATIENT),
    ("POST", "/api/analytics/events"): allow(S),
    ("POST", "/api/analytics/events/batch"): allow(S),
    ("GET", "/api/analytics/dashboard"): allow(C, N, AN),
    ("GET", "/api/audit"): allow(audit=ACTION, resource="audit"),
    ("GET", "/ws"): allow(C, N, S, query_token=True),
    ("GET", "/api/stream"): allow(C, N, S, query_token=True),  # SSE: EventSource sends no headers
    # mints demo tokens; refused unless development tokens are on and the caller is local
    ("POST", "/api/dev/sign-in"): PUBLIC,
    # how the dashboard signs in (development or the OIDC issuer and client id): no secrets
    ("GET", "/api/auth/config"): PUBLIC,
    # the caller's own identity: the dashboard checks its token with it
    ("GET", "/api/auth/session"): allow(C, N, AN),
    # device telemetry and alerting (issue 4)
    ("POST", "/api/devices"): allow(C, audit=WRITE, resource="device"),
    ("GET", "/api/devices"): allow(C, N),
    ("GET", "/api/devices/{device_id}"): allow(C, N),
    ("PUT", "/api/devices/{device_id}/binding"): allow(C, N, audit=ACTION, resource="device"),
    ("DELETE", "/api/devices/{device_id}/binding"): allow(C, N, audit=ACTION, resource="device"),
    ("POST", "/api/devices/{device_id}/telemetry"): DEVICE_KEY,
    # the worker's MQTT subscriber relaying device messages (each still checked by its key)
    ("POST", "/api/telemetry/messages"): allow(S),
    ("GET", "/api/quarantine"): allow(C),
    ("GET", "/api/patients/{patient_id}/vitals"): allow(C, N, audit=READ, **PATIENT),
    ("GET", "/api/patients/{patient_id}/news2"): allow(C, N, audit=READ, **PATIENT),
    ("GET", "/api/news2"): allow(C, N, audit=READ, **PATIENT),
    ("GET", "/api/alerts"): allow(C, N, ward_scoped=True),
    ("POST", "/api/alerts/{alert_id}/ack"): allow(C, N, audit=ACTION, resource="alert"),
    ("POST", "/api/analytics/vitals"): allow(S),
    ("POST", "/api/analytics/vitals/batch"): allow(S),
}

# The gateway (multi-process topology) proxies to the services, which enforce PERMISSIONS
# themselves on the forwarded token; the gateway only turns away requests without a valid one.
_PROXIED = allow(*Role)


def gateway_permissions(
    own: Iterable[tuple[str, str]], forwarded: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Rule]:
    """The gateway's table: its own routes keep their rule; a forwarded route admits any valid
    token, or anyone when it is public at the service (sign-in config, device telemetry with
    its device key), and the service then decides by PERMISSIONS."""
    table = {key: PERMISSIONS[key] for key in own if key in PERMISSIONS}
    for key in forwarded:
        rule = PERMISSIONS.get(key)
        table[key] = rule if rule is not None and rule.public else _PROXIED
    return table


WardOf = Callable[[UUID], Awaitable[str | None]]


@dataclass
class Guard:
    """What the access check needs at run time; app.py builds it and puts it on app.state."""

    verifier: TokenVerifier
    audit: SqlAuditTrail | None  # None in a process without the patient database
    ward_of: WardOf
    per_client: RequestBudget | None = None
    per_subject: RequestBudget | None = None
    permissions: Mapping[tuple[str, str], Rule] = field(default_factory=lambda: PERMISSIONS)

    async def close(self) -> None:
        """Release the request budgets' connections (Redis), when the process stops."""
        for budget in (self.per_client, self.per_subject):
            if budget is not None:
                await budget.close()

    async def refusal(
        self, rule: Rule, principal: Principal, connection: HTTPConnection
    ) -> str | None:
        """Why this principal may not make this call, or None when it may."""
        granting = {r for r in rule.roles if r.value in principal.roles}
        if not granting:
            return "your role does not allow this request"
        if granting == {Role.NURSE} and rule.ward_scoped and principal.ward:
            return await self._outside_ward(principal.ward, connection)
        own = connection.path_params.get(rule.own) if rule.own else None
        if granting == {Role.DEVICE} and rule.own and own != principal.subject:
            return "a device may only act for itself"
        return None

    async def _outside_ward(self, ward: str, connection: HTTPConnection) -> str | None:
        raw = connection.path_params.get("patient_id")
        if raw is not None:
            try:
                patient_id = UUID(str(raw))
            except ValueError:
                return None  # not an id: the route answers 422 and reads nothing
            found = await self.ward_of(patient_id)
            if found is not None and found != ward:
                return f"you are limited to ward {ward}"
            return None
        if connection.query_params.get("ward") != ward:
            return f"you are limited to ward {ward}: ask with ward={ward}"
        return None


def permitted(
    principal: Principal, permissions: Mapping[tuple[str, str], Rule] = PERMISSIONS
) -> list[str]:
    """Every route the principal's roles may call, as "METHOD /path" in table order.

    Public routes are left out (anyone may call them); a ward or device limit still applies to
    what a listed route answers. The dashboard offers only what this list allows.
    """
    return [
        f"{method} {path}"
        for (method, path), rule in permissions.items()
        if not rule.public and any(r.value in principal.roles for r in rule.roles)
    ]


def declared_routes(app: FastAPI | APIRouter) -> dict[tuple[str, str], str]:
    """Every (method, path) the app or router serves through FastAPI, as "http" or "websocket"
    (GET)."""
    found: dict[tuple[str, str], str] = {}

    def walk(routes: Any, prefix: str) -> None:
        for route in routes:
            original = getattr(route, "original_router", None)
            if original is not None:
                walk(original.routes, prefix + route.include_context.prefix)
            elif isinstance(route, APIRoute):
                found.update({(m, prefix + route.path): "http" for m in route.methods or ()})
            elif isinstance(route, APIWebSocketRoute):
                found[("GET", prefix + route.path)] = "websocket"

    walk(app.routes, "")
    return found


_ROLE_LABELS: dict[frozenset[str], str] = {}


def _role_label(principal: Principal) -> str:
    label = _ROLE_LABELS.get(principal.roles)
    if label is None:
        known = sorted(r for r in principal.roles if r in Role.__members__.values())
        label = ",".join(known) or "none"
        if len(_ROLE_LABELS) < 1024:  # a token can carry any role names: keep this bounded
            _ROLE_LABELS[principal.roles] = label
    return label


def _bearer(connection: HTTPConnection, rule: Rule) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if rule.query_token:
        return connection.query_params.get("access_token") or None
    return None


def _entry(
    rule: Rule, method: str, path: str, connection: HTTPConnection, outcome: str
) -> AuditEntry:
    resource_id = next(
        (str(v) for k, v in connection.path_params.items() if k.endswith("_id")), None
    )
    return AuditEntry(f"{method} {path}", rule.resource or "api", resource_id, outcome)


async def guard(connection: HTTPConnection) -> AsyncIterator[Principal | None]:
    """Authenticate, authorise and audit one request (or WebSocket) by the permission table."""
    gate: Guard = connection.app.state.guard
    method = "GET" if connection.scope["type"] == "websocket" else connection.scope["method"]
    path = route_template(connection.scope) or connection.url.path
    rule = gate.permissions.get((method, path))
    if rule is None:
        log.error("route_without_permission_entry", method=method, route=path)
        raise Forbidden("this route has no permission entry: refused for everyone")
    if rule.public:
        yield None
        return
    client_address = connection.scope.get("client")
    client = client_address[0] if client_address else None
    if gate.per_client is not None:
        await gate.per_client.spend(f"client:{client}")
    token = _bearer(connection, rule)
    if token is None:
        raise Unauthenticated("a bearer token is required")
    try:
        principal = await gate.verifier.verify(token)
    except InvalidToken as exc:
        raise Unauthenticated("the token is not valid") from exc
    if gate.per_subject is not None and Role.SERVICE not in principal.roles:
        # HealthFlow's own calls between services (a worker's events, a critical flip) carry
        # the platform's service token; their rate is the pipeline's, bounded by its queues and
        # backpressure, not a caller's budget (shared by every replica, it would throttle them)
        await gate.per_subject.spend(f"subject:{principal.subject}")
    actor = Actor(
        subject=principal.subject,
        role=_role_label(principal),
        client=client,
        request_id=REQUEST_ID.get() or uuid.uuid4().hex,
    )
    with acting_as(actor):
        refused = await gate.refusal(rule, principal, connection)
        audit = gate.audit if rule.audit is not Audit.NONE else None
        if refused:
            if audit is not None:
                await audit.record(_entry(rule, method, path, connection, DENIED))
            raise Forbidden(refused)
        connection.state.principal = principal  # for per-connection decisions, e.g. live topics
        try:
            yield principal
        except Exception:
            if audit is not None:
                await audit.record(_entry(rule, method, path, connection, FAILURE))
            raise
        if audit is not None and rule.audit in (Audit.READ, Audit.ACTION):
            await audit.record(_entry(rule, method, path, connection, SUCCESS))


def permission_rows(
    permissions: Mapping[tuple[str, str], Rule] = PERMISSIONS,
) -> list[tuple[str, str, str, str]]:
    """The table as (method and path, roles, audit, notes) rows, for README and the CLI."""
    rows = []
    for (method, path), rule in permissions.items():
        roles = ", ".join(r.value for r in Role if r in rule.roles)
        if rule.device_key:
            roles = "device (its own `X-Device-Key`, no token)"
        elif rule.public:
            roles = "public"
        notes = []
        if rule.ward_scoped:
            notes.append("nurse: own ward")
        if rule.own:
            notes.append(f"device: own `{rule.own}`")
        if rule.query_token:
            notes.append("`?access_token=` accepted")
        rows.append((f"`{method} {path}`", roles, rule.audit.value, "; ".join(notes)))
    return rows


def permission_table_markdown(permissions: Mapping[tuple[str, str], Rule] = PERMISSIONS) -> str:
    lines = ["| route | roles | audit | notes |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in permission_rows(permissions)]
    return "\n".join(lines)


def document_security(app: FastAPI) -> None:
    """Describe the bearer scheme and each operation's roles in the OpenAPI schema."""

    def describe(schema: dict[str, Any]) -> None:
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        }
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                rule = PERMISSIONS.get((method.upper(), path))
                if rule is None or rule.public:
                    continue  # device-key routes document their header themselves
                operation["security"] = [{"bearer": []}]
                operation["x-roles"] = [r.value for r in Role if r in rule.roles]
                responses = operation.setdefault("responses", {})
                responses.setdefault("401", {"description": "No valid bearer token"})
                responses.setdefault("403", {"description": "Role not allowed"})

    extend_openapi(app, describe)
