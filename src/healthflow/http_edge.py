"""The HTTP edge every request passes: security headers, request id, access metrics and log,
body limit and time limit, as one pure ASGI layer.

These were four middleware classes; one layer does the same with one coroutine frame, one
`send` wrapper and one `receive` wrapper per request instead of four of each (BENCHMARKS.md,
"Per-request cost of the HTTP stack"). The order they had is kept: the body limit's 413 and the
timeout's 504 get the request id and the security headers, and are counted like any answer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from contextvars import ContextVar

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthflow.http import BodyTooLarge, problem, route_template
from healthflow.observability import metrics

log = structlog.get_logger("healthflow.http")
access_log = structlog.get_logger("healthflow.access")

# The id of the request being served, for code that needs it as a value (the audit trail's
# actor); logs get it from structlog's context, bound alongside.
REQUEST_ID: ContextVar[str | None] = ContextVar("healthflow_request_id", default=None)

_MAX_REQUEST_ID = 128
# /docs and /redoc load Swagger UI / ReDoc from a CDN: they get every header but the CSP.
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_DOC_PATHS = ("/docs", "/redoc")
_ALWAYS = (
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_NO_STORE = (b"cache-control", b"no-store")


def security_headers(
    connect_origins: Sequence[str] = (),
) -> tuple[tuple[tuple[bytes, bytes], ...], ...]:
    """The headers added to (docs pages, API answers, everything else): HSTS, no sniffing, no
    framing, no referrer, a CSP, and `no-store` on API answers (PHI must not sit in browser or
    proxy caches). Scripts may also call `connect_origins` (the OIDC issuer, for the browser's
    code flow)."""
    csp = _CSP.replace("connect-src 'self'", " ".join(["connect-src 'self'", *connect_origins]))
    with_csp = (*_ALWAYS, (b"content-security-policy", csp.encode()))
    return _ALWAYS, (*with_csp, _NO_STORE), with_csp


class HttpEdge:
    """Per request: take or make the request id (X-Request-ID, bound to every log line, sent
    back); refuse bodies over `max_body_bytes` with 413, by Content-Length or while streaming;
    answer 504 when the app has not started answering within `timeout_s`, and cancel it (a
    stream that has started runs on); add the security headers; count and time the request by
    route template and log it (the template, never the raw path: it can carry identifiers)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        timeout_s: float,
        max_body_bytes: int,
        connect_origins: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self._docs, self._api, self._other = security_headers(connect_origins)
        self._requests = metrics.Children(metrics.HTTP_REQUESTS)
        self._seconds = metrics.Children(metrics.HTTP_SECONDS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        too_large = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if request_id is None:
                    request_id = value.decode("latin-1")
            elif name == b"content-length" and (
                not value.isdigit() or int(value) > self.max_body_bytes
            ):
                too_large = True
        if not request_id or len(request_id) > _MAX_REQUEST_ID:
            # 32 random hex digits, like uuid4().hex. A correlation id, not a secret: the
            # process's seeded generator, not os.urandom, which gives up the interpreter lock
            # and then waits behind the SQLite threads to take it back
            request_id = f"{random.getrandbits(128):032x}"
        structlog.contextvars.bind_contextvars(request_id=request_id)
        token = REQUEST_ID.set(request_id)
        path: str = scope["path"]
        added = (
            self._docs
            if path.startswith(_DOC_PATHS)
            else self._api
            if path.startswith("/api/")
            else self._other
        )
        request_id_header = (b"x-request-id", request_id.encode("latin-1"))
        started_at = time.perf_counter()
        status = 500
        started = False
        deadline: asyncio.Timeout | None = None
        max_bytes = self.max_body_bytes
        seen = 0

        async def send_edge(message: Message) -> None:
            nonlocal status, started, deadline
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                if deadline is not None:
                    deadline.reschedule(None)  # only the time to the first byte is limited
                    deadline = None
                headers = message.get("headers", [])
                present = {name.lower() for name, _ in headers}
                message["headers"] = [
                    *headers,
                    request_id_header,
                    *(h for h in added if h[0] not in present),
                ]
            await send(message)

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        try:
            if too_large:
                await self._too_large(scope, receive, send_edge)
                return
            try:
                async with asyncio.timeout(self.timeout_s) as deadline:
                    await self.app(scope, receive_limited, send_edge)
            except TimeoutError:
                expired = deadline is not None and deadline.expired()
                deadline = None
                if started or not expired:
                    raise  # a timeout of the app's own making, or one after the answer began
                log.warning("request_timed_out", timeout_s=self.timeout_s)
                response = problem(
                    504,
                    "Request timed out",
                    f"No answer within {self.timeout_s} s; the request was cancelled.",
                    slug="request-timeout",
                )
                await response(scope, receive, send_edge)
            except BodyTooLarge:
                deadline = None
                if not started:
                    await self._too_large(scope, receive, send_edge)
        finally:
            route = route_template(scope) or "unmatched"
            elapsed = time.perf_counter() - started_at
            method = scope["method"]
            self._requests.get(method, route, str(status)).inc()
            self._seconds.get(method, route).observe(elapsed)
            access_log.info(
                "http_request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            REQUEST_ID.reset(token)
            structlog.contextvars.unbind_contextvars("request_id")

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "Request body too large",
            f"Request bodies are limited to {self.max_body_bytes} bytes.",
            slug="body-too-large",
        )
        await response(scope, receive, send)
