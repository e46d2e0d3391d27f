"""The one way HTTP fails (RFC 9457 problem details); the middleware every request passes is in
http_edge.py."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

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
