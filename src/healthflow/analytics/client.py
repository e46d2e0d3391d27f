"""The AnalyticsSink over HTTP: how a worker process hands events to the analytics service."""

from __future__ import annotations

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from healthflow.circuit_breaker import CircuitBreaker
from healthflow.messaging.events import CloudEvent
from healthflow.ports import Check

log = structlog.get_logger(__name__)


class AnalyticsUnavailable(Exception):
    """The analytics service did not take the event (down, timed out, or answered 5xx)."""


class AnalyticsRefused(Exception):
    """The analytics service answered 4xx: the event itself is unacceptable; retrying won't help."""


class HttpAnalyticsSink:
    """POSTs each event to `/api/analytics/events`: pooled client, timeouts, retries with jitter
    (tenacity), and a circuit breaker so a down service is not hammered by every worker."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        breaker: CircuitBreaker,
        *,
        attempts: int,
        max_wait_s: float = 2.0,
    ) -> None:
        self._client = client
        self._breaker = breaker
        self._attempts = attempts
        self._max_wait_s = max_wait_s

    async def record(self, event: CloudEvent) -> bool:
        """True if the service stored the event for the first time, False for a duplicate."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_random_exponential(multiplier=0.1, max=self._max_wait_s),
            retry=retry_if_exception_type(AnalyticsUnavailable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._post(event)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    async def _post(self, event: CloudEvent) -> bool:
        self._breaker.before_call()
        try:
            response = await self._client.post(
                "/api/analytics/events",
                content=event.to_json(),
                headers={"content-type": "application/json"},
            )
        except httpx.HTTPError as exc:
            self._breaker.failed()
            raise AnalyticsUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            self._breaker.failed()
            raise AnalyticsUnavailable(f"analytics answered {response.status_code}")
        self._breaker.succeeded()
        if response.status_code >= 400:
            raise AnalyticsRefused(f"analytics answered {response.status_code}: {response.text}")
        return not bool(response.json()["duplicate"])

    async def check(self) -> Check:
        try:
            response = await self._client.get("/health/ready")
        except httpx.HTTPError as exc:
            return Check(False, {"error": type(exc).__name__, "circuit": self._breaker.state})
        return Check(
            response.status_code == 200,
            {"status_code": response.status_code, "circuit": self._breaker.state},
        )
