"""The AnalyticsSink over HTTP: how a worker process hands events to the analytics service."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from healthflow.circuit_breaker import CircuitBreaker
from healthflow.messaging.events import CloudEvent, batch_to_json
from healthflow.ports import Check
from healthflow.service_calls import ServiceCaller, ServiceUnavailable

# the name this sink's callers know for "the analytics service did not take the event"
AnalyticsUnavailable = ServiceUnavailable
JSON = {"content-type": "application/json"}
# most events handed to the analytics service in one call (a patient event is under 1 KB)
RECORD_CHUNK = 500


class AnalyticsRefused(Exception):
    """The analytics service answered 4xx: the event itself is unacceptable; retrying won't help."""


class HttpAnalyticsSink:
    """POSTs events to `/api/analytics/events` (one) or `/api/analytics/events/batch` (what a
    worker took from its queue, in one call): pooled client, timeouts, retries with jitter
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
            "POST", "/api/analytics/events", content=event.to_json(), headers=JSON
        )
        if response.status_code >= 400:
            raise AnalyticsRefused(f"analytics answered {response.status_code}: {response.text}")
        return not bool(response.json()["duplicate"])

    async def record_many(self, batch: Sequence[CloudEvent]) -> list[bool]:
        """`record` for each event, in order, in calls of at most RECORD_CHUNK events (one
        transaction each); a refused call refuses all its events."""
        firsts: list[bool] = []
        for start in range(0, len(batch), RECORD_CHUNK):
            chunk = batch[start : start + RECORD_CHUNK]
            body = b'{"events":' + batch_to_json(chunk) + b"}"
            response = await self._analytics.send(
                "POST", "/api/analytics/events/batch", content=body, headers=JSON
            )
            if response.status_code >= 400:
                raise AnalyticsRefused(
                    f"analytics answered {response.status_code}: {response.text}"
                )
            firsts.extend(not r["duplicate"] for r in response.json()["results"])
        return firsts

    async def check(self) -> Check:
        return await self._analytics.check()
