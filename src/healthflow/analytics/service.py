"""Analytics use cases: record processed events once, answer the dashboard from rollups."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import structlog

from healthflow.messaging.events import CloudEvent
from healthflow.observability import metrics
from healthflow.patients.domain import PatientNotFound
from healthflow.ports import AlertCounts, AnalyticsStore, Cache, Clock, Hub
from healthflow.vitals.alerts import Severity

log = structlog.get_logger(__name__)
DASHBOARD_KEY = "analytics:dashboard:"
EVENT_PROCESSED = "EventProcessed"


class AnalyticsService:
    def __init__(
        self,
        store: AnalyticsStore,
        cache: Cache,
        hub: Hub,
        clock: Clock,
        *,
        alerts: AlertCounts,
        cache_ttl_s: float,
    ) -> None:
        self._store = store
        self._alerts = alerts
        self._cache = cache
        self._hub = hub
        self._clock = clock
        self._cache_ttl = cache_ttl_s
        # bumped by every recorded event: a summary computed across a bump is not cached, so an
        # invalidation can never be undone by a slower read that started before it
        self._generation = 0

    async def record(self, event: CloudEvent) -> bool:
        """Store an event's effect exactly once; True if this delivery was the first."""
        (first,) = await self.record_many([event])
        return first

    async def record_many(self, batch: Sequence[CloudEvent]) -> list[bool]:
        """Store a batch's effects in one transaction, each event once; per event, True if new."""
        now = self._clock.now()
        firsts = await self._store.record_many(batch, processed_at=now)
        duplicates = firsts.count(False)
        if duplicates:
            metrics.EVENTS_DUPLICATE.labels(consumer="analytics").inc(duplicates)
        if duplicates == len(batch):
            return firsts
        self._generation += 1
        await self._cache.delete_prefix(DASHBOARD_KEY)
        for event, first in zip(batch, firsts, strict=True):
            if first:
                await self._announce(event, now)
        return firsts

    async def _announce(self, event: CloudEvent, now: datetime) -> None:
        try:
            await self._hub.broadcast(
                EVENT_PROCESSED,
                {"event_id": event.id, "event_type": event.type, "subject": event.subject},
                now,
            )
        except Exception:
            metrics.HUB_FAILURES.inc()
            log.exception("hub_broadcast_failed", event_type=EVENT_PROCESSED)

    async def ward(self, patient_id: UUID) -> str:
        """A patient's ward as the projection knows it (the analytics role's PatientDirectory);
        raises PatientNotFound for a patient whose first event has not been processed yet."""
        ward = await self._store.ward_of(patient_id)
        if ward is None:
            raise PatientNotFound(patient_id)
        return ward

    async def dashboard(self, days: int) -> dict[str, Any]:
        key = f"{DASHBOARD_KEY}{days}"
        cached = await self._cache.get(key)
        if cached is not None:
            summary: dict[str, Any] = orjson.loads(cached)
            return summary
        generation = self._generation
        now = self._clock.now()
        today = now.date()
        first_day = today - timedelta(days=days - 1)
        summary = await self._store.dashboard(first_day=first_day, last_day=today)
        raised = await self._alerts.raised_by_day(first_day=first_day, last_day=today)
        summary = {
            "days": days,
            **summary,
            "alerts_by_day": alerts_by_day(first_day, today, raised),
            "generated_at": now.isoformat(),
        }
        if generation == self._generation:
            await self._cache.set(key, orjson.dumps(summary), self._cache_ttl)
        return summary


def alerts_by_day(
    first_day: date, last_day: date, raised: dict[date, dict[str, int]]
) -> list[dict[str, Any]]:
    """Every day of the window, oldest first, with its alerts in total and by severity (zeros
    included, so a chart has a bar for each day and every severity)."""
    days = []
    for n in range((last_day - first_day).days + 1):
        day = first_day + timedelta(days=n)
        counts = raised.get(day, {})
        by_severity = {s.value: int(counts.get(s.value, 0)) for s in Severity}
        days.append(
            {"day": day.isoformat(), "count": sum(by_severity.values()), "by_severity": by_severity}
        )
    return days
