"""The composition root: reads Settings once, builds the adapters, wires services and routes."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog
from fastapi import FastAPI
from prometheus_client import Counter

from healthflow import __version__
from healthflow.analytics import api as analytics_api
from healthflow.analytics import store as analytics_schema
from healthflow.analytics.service import AnalyticsService
from healthflow.analytics.store import SqlAnalyticsStore
from healthflow.clock import SystemClock
from healthflow.http import BodyLimit, RequestContext, install_error_handlers
from healthflow.messaging import dead_letters as dead_letter_schema
from healthflow.messaging.dead_letters import SqlDeadLetterStore
from healthflow.messaging.events import CloudEvent
from healthflow.messaging.memory import MemoryBus
from healthflow.messaging.outbox import OutboxRelay
from healthflow.messaging.worker import WorkerPool
from healthflow.observability import health, metrics
from healthflow.observability.health import Readiness
from healthflow.patients import api as patients_api
from healthflow.patients import store as patient_schema
from healthflow.patients.service import PatientService
from healthflow.patients.store import SqlOutbox, SqlPatientStore
from healthflow.ports import Clock, EventBus
from healthflow.realtime import sse, websocket
from healthflow.realtime.fanout import Fanout
from healthflow.realtime.hub import LiveHub, MemoryHub
from healthflow.realtime.metrics_feed import MetricsFeed, MetricsSources
from healthflow.realtime.redis_backplane import RedisHub
from healthflow.settings import Settings
from healthflow.storage.cache import MemoryCache
from healthflow.storage.engine import Database, open_database

log = structlog.get_logger(__name__)
ANALYTICS_GROUP = "analytics"


def backends(settings: Settings) -> dict[str, str]:
    """Which adapter serves each port, for the start-up banner and the logs."""

    def scheme(url: str) -> str:
        return url.split(":", 1)[0].split("+", 1)[0]

    return {
        "patients": scheme(settings.database_url),
        "analytics": scheme(settings.analytics_url),
        "bus": scheme(settings.broker_url),
        "cache": scheme(settings.cache_url),
        "hub": "redis" if _hub_backplane_url(settings) else "memory",
    }


def _check_supported(settings: Settings) -> None:
    if not settings.broker_url.startswith("memory://"):
        raise ValueError(f"unsupported broker_url {settings.broker_url!r}: only memory:// so far")
    if not settings.cache_url.startswith("memory://"):
        raise ValueError(f"unsupported cache_url {settings.cache_url!r}: only memory:// so far")


@dataclass
class Platform:
    """Everything one running process holds, started and stopped in order."""

    settings: Settings
    clock: Clock
    patients_db: Database
    analytics_db: Database
    bus: EventBus
    hub: LiveHub
    patient_store: SqlPatientStore
    patients: PatientService
    analytics: AnalyticsService
    pool: WorkerPool
    relay: OutboxRelay
    readiness: Readiness
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    metrics_feed: MetricsFeed | None = None

    async def start(self) -> None:
        await self.patients_db.create_schema(patient_schema.metadata)
        await self.patients_db.create_schema(dead_letter_schema.metadata)
        await self.analytics_db.create_schema(analytics_schema.metadata)
        await self.bus.start()
        await self.hub.start()
        self.pool.start()
        self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        if self.metrics_feed is not None:
            self._tasks.append(asyncio.create_task(self.metrics_feed.run(), name="metrics-feed"))
        for task in self._tasks:
            task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        # stop intake first, let workers finish what they hold, then release connections
        await self.pool.stop(self.settings.worker_shutdown_grace_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.relay.stop()
        await self.hub.close()
        await self.bus.close()
        await self.patients_db.dispose()
        await self.analytics_db.dispose()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background_task_crashed", task=task.get_name(), error=repr(task.exception()))


def build_platform(settings: Settings, clock: Clock | None = None) -> Platform:
    _check_supported(settings)
    clock = clock or SystemClock()
    patients_db = open_database(
        settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    analytics_db = open_database(
        settings.analytics_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    hub = _build_hub(settings)
    cache = MemoryCache(max_entries=settings.cache_max_entries)
    bus = MemoryBus(
        dead_letters=SqlDeadLetterStore(patients_db),
        clock=clock,
        retry_delays_s=settings.bus_retry_delays_s,
    )
    outbox = SqlOutbox(patients_db)
    relay = OutboxRelay(
        outbox,
        bus,
        clock,
        batch_size=settings.outbox_batch_size,
        poll_interval_s=settings.outbox_poll_interval_s,
        max_in_flight=settings.outbox_max_in_flight,
    )
    patient_store = SqlPatientStore(patients_db, on_commit=relay.wake)
    patients = PatientService(patient_store, hub, clock)
    analytics_store = SqlAnalyticsStore(analytics_db)
    analytics = AnalyticsService(
        analytics_store, cache, hub, clock, cache_ttl_s=settings.dashboard_cache_ttl_s
    )

    async def handle(event: CloudEvent) -> None:
        await analytics.record(event)

    pool = WorkerPool(
        ANALYTICS_GROUP, handle, workers=settings.worker_count, capacity=settings.worker_queue_size
    )
    bus.subscribe(ANALYTICS_GROUP, pool.submit)
    readiness = Readiness(
        critical={
            "database": patient_store.check,
            "event_bus": bus.check,
            "analytics_store": analytics_store.check,
        },
        outbox=outbox,
        queue=lambda: {"depth": pool.depth, "capacity": pool.capacity, "busy": pool.busy},
        clock=clock,
        degraded_after_s=settings.outbox_degraded_after_s,
    )
    return Platform(
        settings,
        clock,
        patients_db,
        analytics_db,
        bus,
        hub,
        patient_store,
        patients,
        analytics,
        pool,
        relay,
        readiness,
        metrics_feed=_build_metrics_feed(settings, hub, analytics, pool, clock),
    )


# --- live push (realtime/): which hub, and where MetricsUpdated takes its figures from ---


def _hub_backplane_url(settings: Settings) -> str:
    """The Redis URL the hub shares messages through, or "" for a hub local to this process."""
    if settings.hub_backplane_url:
        return settings.hub_backplane_url
    if settings.cache_url.startswith(("redis://", "rediss://")):
        return settings.cache_url
    return ""


def _build_hub(settings: Settings) -> LiveHub:
    fanout = Fanout(
        replay_size=settings.hub_replay_size,
        send_queue_size=settings.hub_send_queue_size,
        max_clients=settings.hub_max_clients,
    )
    url = _hub_backplane_url(settings)
    if not url:
        return MemoryHub(
            fanout,
            vitals_min_interval_s=settings.hub_vitals_min_interval_s,
            heartbeat_s=settings.hub_heartbeat_s,
            idle_timeout_s=settings.hub_idle_timeout_s,
        )
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError(f"unsupported hub_backplane_url {url!r}: redis:// or empty")
    return RedisHub(
        fanout,
        url=url,
        prefix=settings.hub_redis_prefix,
        replay_size=settings.hub_replay_size,
        publish_timeout_s=settings.hub_publish_timeout_s,
        publish_queue_size=settings.hub_publish_queue_size,
        vitals_min_interval_s=settings.hub_vitals_min_interval_s,
        heartbeat_s=settings.hub_heartbeat_s,
        idle_timeout_s=settings.hub_idle_timeout_s,
    )


def _counter_total(counter: Counter) -> float:
    return sum(
        sample.value
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def _build_metrics_feed(
    settings: Settings, hub: LiveHub, analytics: AnalyticsService, pool: WorkerPool, clock: Clock
) -> MetricsFeed:
    async def patients_by_status() -> dict[str, int]:
        by_status: dict[str, int] = (await analytics.dashboard(1))["patients_by_status"]
        return by_status

    sources = MetricsSources(
        events_in_total=lambda: _counter_total(metrics.EVENTS_PUBLISHED),
        events_processed_total=lambda: _counter_total(metrics.EVENTS_PROCESSED),
        worker_queue=lambda: {"depth": pool.depth, "capacity": pool.capacity},
        connected_clients=lambda: hub.fanout.clients,
        patients_by_status=patients_by_status,
    )
    return MetricsFeed(
        hub,
        sources,
        clock,
        interval_s=settings.hub_metrics_interval_s,
        instance=f"{socket.gethostname()}:{os.getpid()}",
    )


def build_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    """The ASGI app for `healthflow serve`; the platform starts and stops with its lifespan."""
    platform = build_platform(settings, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await platform.start()
        log.info("healthflow_started", version=__version__, backends=backends(settings))
        try:
            yield
        finally:
            await platform.stop()
            log.info("healthflow_stopped")

    app = FastAPI(
        title="HealthFlow",
        version=__version__,
        lifespan=lifespan,
        description="Real-time patient flow and bedside monitoring.",
    )
    app.state.platform = platform
    app.state.patients = platform.patients
    app.state.analytics = platform.analytics
    app.state.hub = platform.hub
    app.state.readiness = platform.readiness
    install_error_handlers(app)
    app.include_router(patients_api.router)
    app.include_router(analytics_api.router)
    app.include_router(health.router)
    app.include_router(websocket.router)
    app.include_router(sse.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext)
    return app
