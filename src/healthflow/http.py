"""The one way HTTP fails (RFC 9457 problem details) and the middleware every request passes."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from healthflow.observability import metrics
from healthflow.patients.domain import (
    DomainError,
    MrnTaken,
    PatientChanged,
    PatientInvalid,
    PatientNotFound,
    TransitionRefused,
)
from healthflow.security.errors import Forbidden, Unauthenticated
from healthflow.security.ratelimit import TooManyRequests
from healthflow.security.tokens import IdentityProviderUnavailable

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger(__name__)
access_log = structlog.get_logger("healthflow.access")


class BadRequest(Exception):
    """A request that is well-formed JSON but unusable, e.g. a cursor that was not ours."""

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{slug}" if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# Domain errors and the problem each becomes; the first matching class wins.
_DOMAIN_PROBLEMS: list[tuple[type[DomainError], int, str, str]] = [
    (PatientNotFound, 404, "Patient not found", "patient-not-found"),
    (TransitionRefused, 409, "Status change refused", "transition-refused"),
    (MrnTaken, 409, "MRN already registered", "mrn-taken"),
    (PatientChanged, 409, "Patient changed meanwhile", "patient-changed"),
]


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "request")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem(
                400, "Malformed JSON", "The request body is not valid JSON.", slug="malformed-json"
            )
        listed = [
            {
                "field": _field_path(tuple(e.get("loc", ()))),
                "message": e.get("msg", "invalid"),
                "type": e.get("type", "invalid"),
            }
            for e in errors
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in listed)
        return problem(422, "Invalid request", detail, slug="validation-error", errors=listed)

    @app.exception_handler(PatientInvalid)
    async def _invalid(_: Request, exc: PatientInvalid) -> JSONResponse:
        listed = [
            {"field": p.field, "message": p.message, "type": "value_error"} for p in exc.problems
        ]
        return problem(422, "Invalid request", str(exc), slug="validation-error", errors=listed)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        if isinstance(exc, PatientChanged) and "if-match" in request.headers:
            return problem(412, "Precondition failed", str(exc), slug="precondition-failed")
        for cls, status, title, slug in _DOMAIN_PROBLEMS:
            if isinstance(exc, cls):
                return problem(status, title, str(exc), slug=slug)
        return problem(400, "Request refused", str(exc), slug="refused")

    @app.exception_handler(BadRequest)
    async def _bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        errors = (
            [{"field": exc.field, "message": str(exc), "type": "value_error"}]
            if exc.field
            else None
        )
        return problem(400, "Bad request", str(exc), slug="bad-request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed", 413: "Request body too large"}.get(
            exc.status_code, "HTTP error"
        )
        slug = "body-too-large" if exc.status_code == 413 else None
        headers = dict(exc.headers) if exc.headers else None
        return problem(exc.status_code, title, str(exc.detail), slug=slug, headers=headers)

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(conn: HTTPConnection, exc: Unauthenticated) -> JSONResponse:
        response = problem(
            401,
            "Not authenticated",
            str(exc),
            slug="unauthenticated",
            headers={"WWW-Authenticate": 'Bearer realm="healthflow"'},
        )
        return await _refuse(conn, response, close_code=4401)

    @app.exception_handler(Forbidden)
    async def _forbidden(conn: HTTPConnection, exc: Forbidden) -> JSONResponse:
        response = problem(403, "Forbidden", str(exc), slug="forbidden")
        return await _refuse(conn, response, close_code=4403)

    @app.exception_handler(TooManyRequests)
    async def _too_many(conn: HTTPConnection, exc: TooManyRequests) -> JSONResponse:
        response = problem(
            429,
            "Too many requests",
            str(exc),
            slug="rate-limited",
            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))},
        )
        return await _refuse(conn, response, close_code=1013)

    @app.exception_handler(IdentityProviderUnavailable)
    async def _idp_down(conn: HTTPConnection, exc: IdentityProviderUnavailable) -> JSONResponse:
        log.warning("identity_provider_unavailable", error=str(exc))
        response = problem(
            503,
            "Identity provider unavailable",
            "Tokens cannot be checked right now; retry shortly.",
            slug="identity-provider-unavailable",
            headers={"Retry-After": "5"},
        )
        return await _refuse(conn, response, close_code=1013)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error_type=type(exc).__name__)
        return problem(
            500, "Internal error", "The server failed to handle the request; it has been logged."
        )


async def _refuse(conn: HTTPConnection, response: JSONResponse, *, close_code: int) -> JSONResponse:
    """HTTP gets the problem back; a WebSocket handshake gets it as a denial response where the
    server supports that (uvicorn does), else it is closed with an HTTP-like 44xx code."""
    if isinstance(conn, WebSocket):
        if "websocket.http.response" in conn.scope.get("extensions", {}):
            await conn.send_denial_response(response)
        else:
            await conn.close(close_code, str(response.status_code))
    return response


def route_template(scope: Mapping[str, Any]) -> str | None:
    """The matched route's full path as declared (`/api/patients/{patient_id}`).

    FastAPI >= 0.16x keeps included routers unflattened: `scope["route"]` holds the path inside
    its router, and the include prefixes live on the included router's context.
    """
    path = getattr(scope.get("route"), "path", None)
    if path is None:
        return None
    included = (scope.get("fastapi") or {}).get("included_router")
    prefix = getattr(getattr(included, "include_context", None), "prefix", "") or ""
    return f"{prefix}{path}"


class BodyTooLarge(StarletteHTTPException):
    """Raised while streaming a body past the limit; an HTTPException so FastAPI lets it through."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"Request bodies are limited to {max_bytes} bytes.")


class BodyLimit:
    """Refuse bodies over `max_bytes` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await self._refuse(scope, receive, send)
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "Request body too large",
            f"Request bodies are limited to {self.max_bytes} bytes.",
            slug="body-too-large",
        )
        await response(scope, receive, send)


class RequestContext:
    """Request id in and out (X-Request-ID), bound to every log line; access metrics by route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None
        )
        if not request_id or len(request_id) > 128:
            request_id = uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = route_template(scope) or "unmatched"
            elapsed = time.perf_counter() - started
            metrics.HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            metrics.HTTP_SECONDS.labels(scope["method"], route).observe(elapsed)
            # the route template, never the raw path or query string: those can carry identifiers
            access_log.info(
                "http_request",
                method=scope["method"],
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")


# /docs and /redoc load Swagger UI / ReDoc from a CDN: they get every header but the CSP.
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_DOC_PATHS = ("/docs", "/redoc")


class SecurityHeaders:
    """HSTS, no sniffing, no framing, no referrer, a CSP, and `no-store` on API answers (PHI
    must not sit in browser or proxy caches)."""

    def __init__(self, app: ASGIApp, connect_origins: Sequence[str] = ()) -> None:
        self.app = app
        # scripts may also call these origins (the OIDC issuer, for the browser's code flow)
        self.csp = _CSP.replace(
            "connect-src 'self'", " ".join(["connect-src 'self'", *connect_origins])
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra = [
            (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
        ]
        if not path.startswith(_DOC_PATHS):
            extra.append((b"content-security-policy", self.csp.encode()))
        if path.startswith("/api/"):
            extra.append((b"cache-control", b"no-store"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(name, value) for name, value in extra if name not in present]
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestTimeout:
    """Answer 504 when a request has produced no response within `timeout_s`, and cancel it.

    Only the time to the first byte is limited: a stream (SSE) that has started runs on.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        try:
            async with asyncio.timeout(self.timeout_s) as deadline:

                async def send_tracking(message: Message) -> None:
                    nonlocal started
                    if message["type"] == "http.response.start":
                        started = True
                        deadline.reschedule(None)
                    await send(message)

                await self.app(scope, receive, send_tracking)
        except TimeoutError:
            if started or not deadline.expired():
                raise  # a timeout of the app's own making, or one after the answer began
            log.warning("request_timed_out", timeout_s=self.timeout_s)
            response = problem(
                504,
                "Request timed out",
                f"No answer within {self.timeout_s} s; the request was cancelled.",
                slug="request-timeout",
            )
            await response(scope, receive, send)


def extend_openapi(app: FastAPI, extend: Callable[[dict[str, Any]], None]) -> None:
    """Let `extend` amend the app's generated OpenAPI schema, once, before it is cached."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        extend(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
