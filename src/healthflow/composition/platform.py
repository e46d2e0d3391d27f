"""The whole platform in one process (`--role all`): every service wired to its adapters."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter

from healthflow.analytics.service import AnalyticsService
from healthflow.analytics.store import SqlAnalyticsStore
from healthflow.clock import SystemClock
from healthflow.composition.adapters import (
    ANALYTICS_GROUP,
    GROUP_TYPES,
    VITALS_GROUP,
    Security,
    _build_hub,
    _cache,
    _check_supported,
    _close_cache,
    _critical_checks,
    _event_bus,
    _migrate,
    _patients_database,
    build_security,
    database,
    mqtt_ingest,
    outbox_relay,
    telemetry_intake,
)
from healthflow.messaging.events import CloudEvent
from healthflow.messaging.outbox import OutboxRelay
from healthflow.messaging.worker import WorkerPool
from healthflow.observability import metrics
from healthflow.observability.health import Readiness
from healthflow.patients import events as patient_events
from healthflow.patients.service import PatientService
from healthflow.patients.store import SqlOutbox, SqlPatientStore
from healthflow.ports import Cache, Clock, EventBus, Hub
from healthflow.realtime.hub import LiveHub
from healthflow.realtime.metrics_feed import MetricsFeed, MetricsSources
from healthflow.settings import Settings
from healthflow.storage import migrations
from healthflow.storage.engine import Database
from healthflow.tasks import cancel_and_wait
from healthflow.vitals import store as vitals_store
from healthflow.vitals.escalation import Escalation
from healthflow.vitals.ingest_mqtt import LocalIntake, MqttIngest
from healthflow.vitals.monitor import VitalsMonitor
from healthflow.vitals.service import DeviceService, TelemetryService

log = structlog.get_logger(__name__)


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
    security: Security
    cache: Cache | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    telemetry: Telemetry | None = None
    metrics_feed: MetricsFeed | None = None

    async def prepare_storage(self) -> None:
        """Bring both databases to the current schema (Alembic); start the audit chain."""
        await _migrate(self.patients_db, migrations.PATIENTS)
        await _migrate(self.analytics_db, migrations.ANALYTICS)
        await self.security.audit.prepare()
        await self.patient_store.reencrypt_all()

    async def start(self) -> None:
        await self.prepare_storage()
        await self.bus.start()
        await self.hub.start()
        self.pool.start()
        self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        if self.telemetry is not None:
            self._tasks.extend(await self.telemetry.start())
        if self.metrics_feed is not None:
            self._tasks.append(asyncio.create_task(self.metrics_feed.run(), name="metrics-feed"))
        for task in self._tasks:
            task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        # stop intake first, let workers finish what they hold, then release connections
        if self.telemetry is not None:
            await self.telemetry.stop(self.settings.worker_shutdown_grace_s)
        await self.pool.stop(self.settings.worker_shutdown_grace_s)
        await cancel_and_wait(self._tasks)
        await self.relay.stop()
        await self.hub.close()
        await self.bus.close()
        await _close_cache(self.cache)
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

    async def start(self) -> list[asyncio.Task[None]]:
        # its tables come with the migrations (patients 0003, analytics 0002)
        self.pool.start()
        self._intake_tasks = [asyncio.create_task(self.relay.run(), name="telemetry-relay")]
        if self.mqtt is not None:
            self._intake_tasks.append(asyncio.create_task(self.mqtt.run(), name="mqtt-ingest"))
        return list(self._intake_tasks)

    async def stop(self, grace_s: float) -> None:
        # no new messages or batches; queued readings finish; the outbox keeps the rest
        await cancel_and_wait(self._intake_tasks)
        await self.pool.stop(grace_s)
        await self.relay.stop()


def _build_telemetry(
    settings: Settings,
    clock: Clock,
    patients_db: Database,
    analytics_db: Database,
    bus: EventBus,
    hub: Hub,
    patients: PatientService,
) -> Telemetry:
    devices, intake, relay = telemetry_intake(settings, clock, patients_db, bus, patients)
    monitor = VitalsMonitor(vitals_store.SqlVitalsStore(analytics_db), patients, hub, clock)
    escalation = Escalation(monitor, patients)
    workers, max_batch = vitals_workers(settings, analytics_db)
    pool = WorkerPool(
        VITALS_GROUP,
        escalation.handle,
        workers=workers,
        capacity=settings.worker_queue_size,
        batch_handler=escalation.handle_batch,
        max_batch=max_batch,
    )
    bus.subscribe(VITALS_GROUP, pool.submit, types=GROUP_TYPES[VITALS_GROUP])
    mqtt = mqtt_ingest(settings, LocalIntake(intake))
    return Telemetry(devices, intake, monitor, pool, relay, mqtt)


def vitals_workers(settings: Settings, analytics_db: Database) -> tuple[int, int]:
    """How many workers score readings in this process, and the most readings a batch holds.

    A worker's batch is one transaction on the analytics store, and SQLite has one writer: a
    second worker's batch only waits for it, and while it waits the readings that arrive after
    it are not in it. One worker takes them all in its next batch instead, up to what the
    workers would have held together, so a backlog drains as fast (BENCHMARKS.md, session 16).
    A server database writes batches in parallel, so there each worker counts.
    """
    if settings.vitals_worker_count:
        return settings.vitals_worker_count, settings.worker_batch_size
    if analytics_db.backend == "sqlite":
        return 1, settings.worker_batch_size * settings.worker_count
    return settings.worker_count, settings.worker_batch_size


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background_task_crashed", task=task.get_name(), error=repr(task.exception()))


def build_platform(settings: Settings, clock: Clock | None = None) -> Platform:
    _check_supported(settings)
    clock = clock or SystemClock()
    patients_db = _patients_database(settings)
    analytics_db = database(settings, settings.analytics_url)
    hub = _build_hub(settings)
    cache = _cache(settings)
    bus = _event_bus(settings, clock, patients_db)
    security = build_security(settings, clock, patients_db)
    outbox = SqlOutbox(patients_db, cipher=security.cipher)
    relay = outbox_relay(settings, outbox, bus, clock, patients_db)
    patient_store = SqlPatientStore(
        patients_db, cipher=security.cipher, audit=security.audit, on_commit=relay.committed
    )
    patients = PatientService(patient_store, hub, clock)
    analytics_store = SqlAnalyticsStore(analytics_db)
    analytics = AnalyticsService(
        analytics_store,
        cache,
        hub,
        clock,
        alerts=vitals_store.SqlVitalsStore(analytics_db),
        cache_ttl_s=settings.dashboard_cache_ttl_s,
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
    bus.subscribe(ANALYTICS_GROUP, pool.submit, types=GROUP_TYPES[ANALYTICS_GROUP])
    telemetry = _build_telemetry(settings, clock, patients_db, analytics_db, bus, hub, patients)
    readiness = Readiness(
        critical={
            "database": patient_store.check,
            "event_bus": bus.check,
            "analytics_store": analytics_store.check,
            "telemetry_intake": telemetry.intake.check,
            **_critical_checks(cache),
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
        security,
        cache,
        telemetry=telemetry,
        metrics_feed=_build_metrics_feed(settings, hub, analytics, pool, bus, telemetry, clock),
    )


def _counter_total(counter: Counter) -> float:
    return sum(
        sample.value
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def _build_metrics_feed(
    settings: Settings,
    hub: LiveHub,
    analytics: AnalyticsService,
    pool: WorkerPool,
    bus: EventBus,
    telemetry: Telemetry,
    clock: Clock,
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
        open_alerts_by_severity=telemetry.monitor.open_alerts_by_severity,
        dead_letters=bus.dead_letter_count,
    )
    return MetricsFeed(
        hub,
        sources,
        clock,
        interval_s=settings.hub_metrics_interval_s,
        instance=f"{socket.gethostname()}:{os.getpid()}",
    )
