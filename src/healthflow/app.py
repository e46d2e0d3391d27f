"""The composition root: reads Settings once, builds the adapters, wires services and routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog
from fastapi import FastAPI

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
from healthflow.observability import health
from healthflow.observability.health import Readiness
from healthflow.patients import api as patients_api
from healthflow.patients import events as patient_events
from healthflow.patients import store as patient_schema
from healthflow.patients.service import PatientService
from healthflow.patients.store import SqlOutbox, SqlPatientStore
from healthflow.ports import Clock, EventBus
from healthflow.realtime import websocket
from healthflow.realtime.hub import MemoryHub
from healthflow.settings import Settings
from healthflow.storage.cache import MemoryCache
from healthflow.storage.engine import Database, open_database
from healthflow.vitals import api as vitals_api
from healthflow.vitals import ingest_http, intake_store
from healthflow.vitals import store as vitals_store
from healthflow.vitals.ingest_mqtt import Broker, MqttIngest
from healthflow.vitals.monitor import VitalsMonitor
from healthflow.vitals.service import DeviceService, TelemetryService
from healthflow.web_dashboard import DEFAULT_DIST, mount_dashboard

log = structlog.get_logger(__name__)
ANALYTICS_GROUP = "analytics"
VITALS_GROUP = "vitals"


def backends(settings: Settings) -> dict[str, str]:
    """Which adapter serves each port, for the start-up banner and the logs."""

    def scheme(url: str) -> str:
        return url.split(":", 1)[0].split("+", 1)[0]

    return {
        "patients": scheme(settings.database_url),
        "analytics": scheme(settings.analytics_url),
        "bus": scheme(settings.broker_url),
        "cache": scheme(settings.cache_url),
        "hub": "memory",
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
    hub: MemoryHub
    patient_store: SqlPatientStore
    patients: PatientService
    analytics: AnalyticsService
    pool: WorkerPool
    relay: OutboxRelay
    readiness: Readiness
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    telemetry: Telemetry | None = None

    async def start(self) -> None:
        await self.patients_db.create_schema(patient_schema.metadata)
        await self.patients_db.create_schema(dead_letter_schema.metadata)
        await self.analytics_db.create_schema(analytics_schema.metadata)
        await self.bus.start()
        self.pool.start()
        self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        if self.telemetry is not None:
            self._tasks.extend(await self.telemetry.start(self.patients_db, self.analytics_db))
        for task in self._tasks:
            task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        # stop intake first, let workers finish what they hold, then release connections
        if self.telemetry is not None:
            await self.telemetry.stop(self.settings.worker_shutdown_grace_s)
        await self.pool.stop(self.settings.worker_shutdown_grace_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.relay.stop()
        await self.bus.close()
        await self.patients_db.dispose()
        await self.analytics_db.dispose()


@dataclass
class Telemetry:
    """Device telemetry (issue 4): intake, its outbox relay, the vitals workers, MQTT."""

    devices: DeviceService
    intake: TelemetryService
    monitor: VitalsMonitor
    pool: WorkerPool
    relay: OutboxRelay
    mqtt: MqttIngest | None
    _intake_tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(
        self, patients_db: Database, analytics_db: Database
    ) -> list[asyncio.Task[None]]:
        await patients_db.create_schema(intake_store.intake_metadata)
        await analytics_db.create_schema(vitals_store.series_metadata)
        self.pool.start()
        self._intake_tasks = [asyncio.create_task(self.relay.run(), name="telemetry-relay")]
        if self.mqtt is not None:
            self._intake_tasks.append(asyncio.create_task(self.mqtt.run(), name="mqtt-ingest"))
        return list(self._intake_tasks)

    async def stop(self, grace_s: float) -> None:
        # no new messages or batches; queued readings finish; the outbox keeps the rest
        for task in self._intake_tasks:
            task.cancel()
        await asyncio.gather(*self._intake_tasks, return_exceptions=True)
        await self.pool.stop(grace_s)
        await self.relay.stop()


def _build_telemetry(
    settings: Settings,
    clock: Clock,
    patients_db: Database,
    analytics_db: Database,
    bus: EventBus,
    hub: MemoryHub,
    patients: PatientService,
) -> Telemetry:
    relay = OutboxRelay(
        intake_store.SqlTelemetryOutbox(patients_db),
        bus,
        clock,
        batch_size=settings.outbox_batch_size,
        poll_interval_s=settings.outbox_poll_interval_s,
        max_in_flight=1,  # one batch at a time keeps each patient's readings in order
    )
    devices = DeviceService(intake_store.SqlDeviceRegistry(patients_db), patients, clock)
    intake = TelemetryService(
        devices,
        intake_store.SqlTelemetryIntake(patients_db, on_commit=relay.wake),
        clock,
        backlog_limit=settings.telemetry_backlog_limit,
    )
    monitor = VitalsMonitor(vitals_store.SqlVitalsStore(analytics_db), patients, hub, clock)
    pool = WorkerPool(
        VITALS_GROUP,
        monitor.handle,
        workers=settings.worker_count,
        capacity=settings.worker_queue_size,
    )
    bus.subscribe(VITALS_GROUP, pool.submit)
    mqtt = None
    if settings.mqtt_url:
        mqtt = MqttIngest(
            intake,
            Broker.from_url(settings.mqtt_url),
            client_id=settings.mqtt_client_id,
            topic_prefix=settings.mqtt_topic_prefix,
            max_message_bytes=settings.max_body_bytes,
            queue_size=settings.worker_queue_size,
        )
    return Telemetry(devices, intake, monitor, pool, relay, mqtt)


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
    hub = MemoryHub(send_queue_size=settings.hub_send_queue_size)
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
        publish_timeout_s=settings.outbox_publish_timeout_s,
    )
    patient_store = SqlPatientStore(patients_db, on_commit=relay.wake)
    patients = PatientService(patient_store, hub, clock)
    analytics_store = SqlAnalyticsStore(analytics_db)
    analytics = AnalyticsService(
        analytics_store, cache, hub, clock, cache_ttl_s=settings.dashboard_cache_ttl_s
    )

    async def handle(event: CloudEvent) -> None:
        if event.type in patient_events.TYPES:  # telemetry events have their own consumers
            await analytics.record(event)

    async def handle_batch(batch: Sequence[CloudEvent]) -> None:
        ours = [e for e in batch if e.type in patient_events.TYPES]
        if ours:
            await analytics.record_many(ours)

    pool = WorkerPool(
        ANALYTICS_GROUP,
        handle,
        workers=settings.worker_count,
        capacity=settings.worker_queue_size,
        batch_handler=handle_batch,
        max_batch=settings.worker_batch_size,
    )
    bus.subscribe(ANALYTICS_GROUP, pool.submit)
    telemetry = _build_telemetry(settings, clock, patients_db, analytics_db, bus, hub, patients)
    readiness = Readiness(
        critical={
            "database": patient_store.check,
            "event_bus": bus.check,
            "analytics_store": analytics_store.check,
            "telemetry_intake": telemetry.intake.check,
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
        telemetry=telemetry,
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
    if platform.telemetry is not None:
        app.state.devices = platform.telemetry.devices
        app.state.telemetry = platform.telemetry.intake
        app.state.vitals_monitor = platform.telemetry.monitor
        vitals_api.install_error_handlers(app)
    install_error_handlers(app)
    app.include_router(patients_api.router)
    app.include_router(analytics_api.router)
    app.include_router(health.router)
    app.include_router(websocket.router)
    app.include_router(ingest_http.router)
    app.include_router(vitals_api.router)
    mount_dashboard(app, settings.web_dir or DEFAULT_DIST)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext)
    return app
