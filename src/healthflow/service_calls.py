"""Calls from one HealthFlow service to another: a pooled client, bounded retries with full
jitter (tenacity) for transport errors, 5xx and 429 answers, and a circuit breaker, so a service
that is down is not hammered by every worker at once. Used by the worker's HTTP adapters
(analytics/client.py, vitals/clients.py)."""

from __future__ import annotations

from typing import Any

import httpx
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
