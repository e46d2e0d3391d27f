"""The AnalyticsSink over HTTP: how a worker process hands events to the analytics service."""

from __future__ import annotations

import httpx

from healthflow.circuit_breaker import CircuitBreaker
from healthflow.messaging.events import CloudEvent
from healthflow.ports import Check
from healthflow.service_calls import ServiceCaller, ServiceUnavailable

# the name this sink's callers know for "the analytics service did not take the event"
AnalyticsUnavailable = ServiceUnavailable


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
        self._analytics = ServiceCaller(
            "analytics", client, breaker, attempts=attempts, max_wait_s=max_wait_s
        )

    async def record(self, event: CloudEvent) -> bool:
        """True if the service stored the event for the first time, False for a duplicate."""
        response = await self._analytics.send(
            "POST",
            "/api/analytics/events",
            content=event.to_json(),
            headers={"content-type": "application/json"},
        )
        if response.status_code >= 400:
            raise AnalyticsRefused(f"analytics answered {response.status_code}: {response.text}")
        return not bool(response.json()["duplicate"])

    async def check(self) -> Check:
        return await self._analytics.check()
