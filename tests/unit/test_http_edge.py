"""The HTTP edge (one ASGI layer): request id, security headers, access metrics, body and time
limits, each answer it makes itself carrying the same headers as any other."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.types import Message, Receive, Scope, Send

from healthflow.http_edge import REQUEST_ID, HttpEdge

App = Callable[[Scope, Receive, Send], Awaitable[None]]


async def answer_ok(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def call(
    app: App,
    *,
    path: str = "/api/things",
    headers: list[tuple[bytes, bytes]] | None = None,
    chunks: list[bytes] | None = None,
    timeout_s: float = 5.0,
    max_body_bytes: int = 100,
) -> tuple[int, dict[bytes, bytes], bytes]:
    edge = HttpEdge(app, timeout_s=timeout_s, max_body_bytes=max_body_bytes)
    scope: Scope = {"type": "http", "method": "POST", "path": path, "headers": headers or []}
    pending = list(chunks or [b""])

    async def receive() -> Message:
        if not pending:
            await asyncio.Event().wait()
        body = pending.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await edge(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def served(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "healthflow_http_requests_total", {"method": "POST", "route": route, "status": status}
    )
    return value or 0.0


async def test_a_request_id_is_taken_from_the_caller_or_made_and_sent_back() -> None:
    _, given, _ = await call(answer_ok, headers=[(b"x-request-id", b"abc-123")])
    _, made, _ = await call(answer_ok)
    _, too_long, _ = await call(answer_ok, headers=[(b"x-request-id", b"x" * 129)])
    assert given[b"x-request-id"] == b"abc-123"
    made_ids = {made[b"x-request-id"], too_long[b"x-request-id"]}
    made_ids |= {(await call(answer_ok))[1][b"x-request-id"] for _ in range(100)}
    assert len(made_ids) == 102  # each request its own
    assert all(re.fullmatch(rb"[0-9a-f]{32}", made_id) for made_id in made_ids)


async def test_the_request_id_is_known_while_serving_and_forgotten_after() -> None:
    seen: list[str | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(REQUEST_ID.get())
        await answer_ok(scope, receive, send)

    await call(app, headers=[(b"x-request-id", b"req-7")])
    assert seen == ["req-7"]
    assert REQUEST_ID.get() is None


@pytest.mark.parametrize(
    ("path", "csp", "no_store"),
    [("/api/things", True, True), ("/health", True, False), ("/docs", False, False)],
)
async def test_security_headers_by_path(path: str, csp: bool, no_store: bool) -> None:
    _, headers, _ = await call(answer_ok, path=path)
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"x-frame-options"] == b"DENY"
    assert headers[b"strict-transport-security"].startswith(b"max-age=")
    assert headers[b"referrer-policy"] == b"no-referrer"
    assert (b"content-security-policy" in headers) is csp
    assert (headers.get(b"cache-control") == b"no-store") is no_store


async def test_a_header_the_app_set_itself_is_not_overridden() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"cache-control", b"max-age=60")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    edge = HttpEdge(app, timeout_s=5, max_body_bytes=100)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    await edge({"type": "http", "method": "GET", "path": "/api/x", "headers": []}, receive, send)
    names = [name for name, _ in sent[0]["headers"]]
    assert names.count(b"cache-control") == 1
    assert dict(sent[0]["headers"])[b"cache-control"] == b"max-age=60"


async def test_a_body_declared_too_large_is_a_413_problem_without_calling_the_app() -> None:
    called = False

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal called
        called = True

    before = served("unmatched", "413")
    status, headers, body = await call(app, headers=[(b"content-length", b"101")])
    assert (status, called) == (413, False)
    assert headers[b"content-type"] == b"application/problem+json"
    assert b"body-too-large" in body
    assert b"x-request-id" in headers and b"x-content-type-options" in headers
    assert served("unmatched", "413") == before + 1


async def test_a_malformed_content_length_is_a_413() -> None:
    status, _, _ = await call(answer_ok, headers=[(b"content-length", b"12x")])
    assert status == 413


async def test_a_streamed_body_past_the_limit_is_a_413() -> None:
    status, headers, body = await call(answer_ok, chunks=[b"x" * 60, b"x" * 60])
    assert status == 413
    assert b"body-too-large" in body
    assert b"x-request-id" in headers


async def test_a_streamed_body_within_the_limit_passes() -> None:
    status, _, _ = await call(answer_ok, chunks=[b"x" * 50, b"x" * 50])
    assert status == 200


async def test_no_answer_in_time_is_a_504_problem_and_the_app_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    status, headers, body = await call(app, timeout_s=0.05)
    assert status == 504
    assert b"request-timeout" in body
    assert b"x-request-id" in headers and b"strict-transport-security" in headers
    assert cancelled.is_set()


async def test_an_answer_that_has_started_runs_past_the_time_limit() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b"late"})

    status, _, body = await call(app, timeout_s=0.02)
    assert (status, body) == (200, b"late")


async def test_a_timeout_of_the_apps_own_making_is_not_turned_into_a_504() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise TimeoutError("the app's own")

    with pytest.raises(TimeoutError, match="the app's own"):
        await call(app)


async def test_requests_are_counted_by_route_template_and_status() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = type("Route", (), {"path": "/api/things/{thing_id}"})()
        await answer_ok(scope, receive, send)

    before = served("/api/things/{thing_id}", "200")
    for _ in range(3):
        await call(app, path="/api/things/42")
    assert served("/api/things/{thing_id}", "200") == before + 3


async def test_an_unhandled_error_is_counted_as_500_and_goes_on_up() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> Any:
        raise RuntimeError("boom")

    before = served("unmatched", "500")
    with pytest.raises(RuntimeError):
        await call(app)
    assert served("unmatched", "500") == before + 1
