"""MetricsUpdated: rates from counters, figures from injected sources, failures isolated, logged
(a timeout as one line, anything else with its traceback) and counted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from healthflow.realtime.metrics_feed import MetricsFeed, MetricsSources
from tests.conftest import SteppingClock


class RecordingHub:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], datetime]] = []

    async def broadcast(self, type: str, data: dict[str, Any], time: datetime) -> None:
        self.sent.append((type, data, time))

    def stats(self) -> dict[str, int]:
        return {}


class Counters:
    def __init__(self) -> None:
        self.t = 0.0
        self.events_in = 0.0
        self.processed = 0.0


async def test_rates_are_per_second_over_the_last_interval() -> None:
    counters = Counters()

    async def by_status() -> dict[str, int]:
        return {"registered": 2}

    async def broken() -> dict[str, int]:
        raise RuntimeError("alerts store down")

    async def dead_letters() -> int:
        return 4

    sources = MetricsSources(
        events_in_total=lambda: counters.events_in,
        events_processed_total=lambda: counters.processed,
        worker_queue=lambda: {"depth": 3, "capacity": 100, "busy": 1},
        connected_clients=lambda: 7,
        patients_by_status=by_status,
        open_alerts_by_severity=broken,
        dead_letters=dead_letters,
    )
    hub = RecordingHub()
    clock = SteppingClock()
    feed = MetricsFeed(
        hub, sources, clock, interval_s=1, instance="i1", monotonic=lambda: counters.t
    )
    await feed.publish_once()
    counters.t, counters.events_in, counters.processed = 2.0, 40.0, 30.0
    await feed.publish_once()
    (type0, first, _), (type1, second, at) = hub.sent
    assert type0 == type1 == "MetricsUpdated"
    assert first["events_in_per_s"] == 0.0
    assert second == {
        "instance": "i1",
        "events_in_per_s": 20.0,
        "events_processed_per_s": 15.0,
        "worker_queue": {"depth": 3, "capacity": 100},
        "open_alerts_by_severity": None,
        "patients_by_status": {"registered": 2},
        "connected_clients": 7,
        "dead_letters": 4,
    }
    assert at == clock.now()


async def test_figures_not_wired_in_are_null() -> None:
    sources = MetricsSources(
        events_in_total=lambda: 0.0,
        events_processed_total=lambda: 0.0,
        worker_queue=lambda: {"depth": 0, "capacity": 10},
        connected_clients=lambda: 1,
    )
    feed = MetricsFeed(RecordingHub(), sources, SteppingClock(), interval_s=1, instance="i1")
    snapshot = await feed.snapshot()
    assert snapshot["dead_letters"] is None
    assert snapshot["open_alerts_by_severity"] is None
    assert snapshot["patients_by_status"] is None


def feed_with(**sources: Callable[[], Awaitable[Any]]) -> MetricsFeed:
    wired = MetricsSources(
        events_in_total=lambda: 0.0,
        events_processed_total=lambda: 0.0,
        worker_queue=lambda: {"depth": 0, "capacity": 10},
        connected_clients=lambda: 0,
        **sources,
    )
    return MetricsFeed(
        RecordingHub(), wired, SteppingClock(), interval_s=1, instance="i1", query_timeout_s=0.05
    )


def failures(source: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "healthflow_metrics_feed_source_failures_total", {"source": source, "reason": reason}
    )
    return value or 0.0


async def test_a_source_that_times_out_is_one_warning_line_and_a_count() -> None:
    async def waits_for_a_connection() -> dict[str, int]:
        await asyncio.Event().wait()  # a reader pool with no free connection
        return {}

    before = failures("patients_by_status", "timeout")
    with capture_logs() as logs:
        snapshot = await feed_with(patients_by_status=waits_for_a_connection).snapshot()

    assert snapshot["patients_by_status"] is None
    assert logs == [
        {
            "event": "metrics_feed_source_timed_out",
            "log_level": "warning",
            "source": "patients_by_status",
            "error": "TimeoutError",
            "timeout_s": 0.05,
        }
    ]
    assert failures("patients_by_status", "timeout") == before + 1


async def test_a_source_that_breaks_is_logged_with_its_traceback_and_counted() -> None:
    async def broken() -> int:
        raise RuntimeError("dead-letter store down")

    before = failures("dead_letters", "error")
    with capture_logs() as logs:
        snapshot = await feed_with(dead_letters=broken).snapshot()

    assert snapshot["dead_letters"] is None
    [entry] = logs
    assert entry["event"] == "metrics_feed_source_failed"
    assert entry["log_level"] == "error"
    assert entry["source"] == "dead_letters"
    assert entry["exc_info"] is True  # rendered as the traceback by format_exc_info
    assert failures("dead_letters", "error") == before + 1
