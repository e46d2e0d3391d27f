"""Calls from one HealthFlow service to another: a pooled client, bounded retries with full
jitter (tenacity) for transport errors, 5xx and 429 answers, and a circuit breaker, so a service
that is down is not hammered by every worker at once. Used by the worker's HTTP adapters
(analytics/client.py, vitals/clients.py); the gateway proxies over the same clients.

The clients speak httpx, but their connections are aiohttp's (`httpx-aiohttp`): httpx's own pool
looks at every pooled connection's socket on every request, which cost the gateway most of its
8.7 ms of CPU per proxied request at 32 concurrent ones (BENCHMARKS.md, "Service clients on
aiohttp's connection pool").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from healthflow.circuit_breaker import CircuitBreaker
from healthflow.ports import Check


class ServiceUnavailable(Exception):
    """The service did not take the call (down, timed out, or answered 5xx) after every attempt."""


class ServiceRefused(Exception):
    """The service answered 4xx where the caller expected success: retrying won't help."""

    def __init__(self, service: str, response: httpx.Response) -> None:
        super().__init__(f"{service} answered {response.status_code}: {response.text[:500]}")
        self.status_code = response.status_code
        self.problem_type = problem_type(response)


def service_client(
    base_url: str,
    *,
    timeout_s: float,
    max_connections: int,
    keepalive_s: float,
    auth: httpx.Auth | None = None,
) -> httpx.AsyncClient:
    """A pooled client of one service: at most `max_connections` open, an idle one kept for
    `keepalive_s` (keep it below the service's keep-alive, or a request can go out on a
    connection the service is closing)."""
    limits = httpx.Limits(max_connections=max_connections, keepalive_expiry=keepalive_s)
    return httpx.AsyncClient(
        base_url=base_url,
        auth=auth,
        timeout=timeout_s,
        limits=limits,
        transport=ServiceTransport(limits=limits),
    )


class ServiceTransport(AiohttpTransport):
    """httpx over aiohttp's connection pool, failing with the httpx errors httpx's own pool
    raises, so callers tell "nobody listens" (ConnectError), "no answer in time" (a timeout) and
    "a broken answer" (a protocol error) apart. The library's own mapping turns a refused or
    dropped connection into a ConnectTimeout and lets some aiohttp errors through unmapped."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _httpx_errors(request):
            response = await super().handle_async_request(request)
        response.stream = _CheckedStream(response.stream, request)
        return response


class _CheckedStream(httpx.AsyncByteStream):
    """The answer's body, read with the same error mapping as the request."""

    def __init__(self, stream: Any, request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        with _httpx_errors(self._request):
            await self._stream.aclose()


@contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except httpx.HTTPError as exc:
        cause = exc.__cause__  # the library raises its mapped error from aiohttp's
        if not isinstance(cause, aiohttp.ClientError | TimeoutError):
            raise
        raise _as_httpx(cause, request) from cause
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _as_httpx(exc, request) from exc


def _as_httpx(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, TimeoutError):  # aiohttp's read timeouts are these too
        return httpx.ReadTimeout(message, request=request)
    # the connection dropped or reset mid-exchange, or the answer was not HTTP
    return httpx.RemoteProtocolError(message, request=request)


class ServiceCaller:
    """One downstream service behind a breaker; `send` retries what may succeed next time."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        breaker: CircuitBreaker,
        *,
        attempts: int,
        max_wait_s: float = 2.0,
    ) -> None:
        self.name = name
        self.client = client
        self.breaker = breaker
        self._attempts = attempts
        self._max_wait_s = max_wait_s

    async def send(self, method: str, path: str, **request: Any) -> httpx.Response:
        """The service's answer below 500; ServiceUnavailable after the last failed attempt,
        CircuitOpen (not retried here) while the circuit is open."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_random_exponential(multiplier=0.1, max=self._max_wait_s),
            retry=retry_if_exception_type(ServiceUnavailable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._once(method, path, request)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    async def _once(self, method: str, path: str, request: dict[str, Any]) -> httpx.Response:
        self.breaker.before_call()
        try:
            response = await self.client.request(method, path, **request)
        except httpx.HTTPError as exc:
            self.breaker.failed()
            raise ServiceUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            self.breaker.failed()
            raise ServiceUnavailable(f"{self.name} answered {response.status_code}")
        self.breaker.succeeded()  # it answered: up, even when it asks us to slow down
        if response.status_code == 429:
            # rate limited (the worker is one subject and one client to it): later, not never
            raise ServiceUnavailable(f"{self.name} answered 429: rate limited")
        return response

    async def check(self) -> Check:
        """Readiness of the service as this process sees it, with the circuit's state."""
        try:
            response = await self.client.get("/health/ready")
        except httpx.HTTPError as exc:
            return Check(False, {"error": type(exc).__name__, "circuit": self.breaker.state})
        return Check(
            response.status_code == 200,
            {"status_code": response.status_code, "circuit": self.breaker.state},
        )


def problem_type(response: httpx.Response) -> str | None:
    """The RFC 9457 `type` of a problem+json answer (our slugs: `/problems/{slug}`)."""
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    kind = body.get("type") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else None
