"""`MetricsUpdated` on the `metrics` topic every interval, from sources app.py wires in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from healthflow.observability import metrics
from healthflow.ports import Clock, Hub

log = structlog.get_logger(__name__)
METRICS_UPDATED = "MetricsUpdated"
Counts = dict[str, int]
T = TypeVar("T")


@dataclass(frozen=True)
class MetricsSources:
    """Where each figure comes from; optional ones are null in the message when not wired."""

    events_in_total: Callable[[], float]
    events_processed_total: Callable[[], float]
    worker_queue: Callable[[], dict[str, int]]
    connected_clients: Callable[[], int]
    patients_by_status: Callable[[], Awaitable[Counts]] | None = None
    open_alerts_by_severity: Callable[[], Awaitable[Counts]] | None = None
    dead_letters: Callable[[], Awaitable[int]] | None = None


class MetricsFeed:
    """Publishes one MetricsUpdated per interval; rates are per second over the last interval."""

    def __init__(
        self,
        hub: Hub,
        sources: MetricsSources,
        clock: Clock,
        *,
        interval_s: float,
        instance: str,
        query_timeout_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hub = hub
        self._sources = sources
        self._clock = clock
        self._interval = interval_s
        self._instance = instance
        self._timeout = query_timeout_s
        self._monotonic = monotonic
        self._last: tuple[float, float, float] | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.publish_once()
            except Exception:
                log.exception("metrics_feed_failed")

    async def publish_once(self) -> None:
        await self._hub.broadcast(METRICS_UPDATED, await self.snapshot(), self._clock.now())

    async def snapshot(self) -> dict[str, Any]:
        src = self._sources
        now = self._monotonic()
        events_in, processed = src.events_in_total(), src.events_processed_total()
        in_rate = processed_rate = 0.0
        if self._last is not None and now > self._last[0]:
            elapsed = now - self._last[0]
            in_rate = max(events_in - self._last[1], 0.0) / elapsed
            processed_rate = max(processed - self._last[2], 0.0) / elapsed
        self._last = (now, events_in, processed)
        queue = src.worker_queue()
        return {
            "instance": self._instance,
            "events_in_per_s": round(in_rate, 2),
            "events_processed_per_s": round(processed_rate, 2),
            "worker_queue": {"depth": queue["depth"], "capacity": queue["capacity"]},
            "open_alerts_by_severity": await self._ask(
                "open_alerts_by_severity", src.open_alerts_by_severity
            ),
            "patients_by_status": await self._ask("patients_by_status", src.patients_by_status),
            "connected_clients": src.connected_clients(),
            "dead_letters": await self._ask("dead_letters", src.dead_letters),
        }

    async def _ask(self, name: str, source: Callable[[], Awaitable[T]] | None) -> T | None:
        """One best-effort figure, or None: one slow or broken figure must not stop the others
        from being published."""
        if source is None:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                return await source()
        except TimeoutError as exc:
            # expected under load (the read waits for a pooled connection): one line, no traceback
            metrics.METRICS_FEED_SOURCE_FAILURES.labels(name, "timeout").inc()
            log.warning(
                "metrics_feed_source_timed_out",
                source=name,
                error=type(exc).__name__,
                timeout_s=self._timeout,
            )
            return None
        except Exception:
            metrics.METRICS_FEED_SOURCE_FAILURES.labels(name, "error").inc()
            log.exception("metrics_feed_source_failed", source=name)
            return None
