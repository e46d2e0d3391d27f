"""The composition root: reads Settings once, builds the adapters, wires services and routes."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import structlog
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import Counter
from pydantic import SecretStr

from healthflow import __version__
from healthflow.analytics import api as analytics_api
from healthflow.analytics.client import HttpAnalyticsSink
from healthflow.analytics.service import AnalyticsService
from healthflow.analytics.store import SqlAnalyticsStore
from healthflow.circuit_breaker import CircuitBreaker
from healthflow.clock import SystemClock
from healthflow.gateway import proxy as gateway_proxy
from healthflow.gateway.health import GatewayReadiness
from healthflow.gateway.proxy import Upstream
from healthflow.http import (
    BodyLimit,
    RequestContext,
    RequestTimeout,
    SecurityHeaders,
    install_error_handlers,
)
from healthflow.messaging.dead_letters import SqlDeadLetterStore
from healthflow.messaging.events import CloudEvent
from healthflow.messaging.memory import MemoryBus
from healthflow.messaging.outbox import OutboxRelay
from healthflow.messaging.rabbitmq import RabbitBus
from healthflow.messaging.worker import WorkerPool
from healthflow.observability import health, metrics
from healthflow.observability.health import Readiness
from healthflow.patients import api as patients_api
from healthflow.patients import events as patient_events
from healthflow.patients.service import PatientService
from healthflow.patients.store import SqlOutbox, SqlPatientStore
from healthflow.ports import Cache, Check, Clock, DeadLetter, Delivery, EventBus, Hub
from healthflow.realtime import sse, websocket
from healthflow.realtime.fanout import Fanout
from healthflow.realtime.hub import LiveHub, MemoryHub
from healthflow.realtime.metrics_feed import MetricsFeed, MetricsSources
from healthflow.realtime.redis_backplane import RedisHub
from healthflow.security import api as audit_api
from healthflow.security.audit import SqlAuditTrail
from healthflow.security.crypto import FieldCipher, KeyRing, decode_key
from healthflow.security.live import live_access
from healthflow.security.ratelimit import RateLimiter
from healthflow.security.rbac import (
    GATEWAY_PERMISSIONS,
    PERMISSIONS,
    Guard,
    Rule,
    document_security,
    guard,
)
from healthflow.security.tokens import (
    DevTokens,
    JwksTokens,
    ServiceCredentials,
    TokenVerifier,
    load_or_create_secret,
)
from healthflow.settings import Settings
from healthflow.storage import migrations
from healthflow.storage.cache import MemoryCache
from healthflow.storage.engine import Database, open_database
from healthflow.storage.redis_cache import RedisCache
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
        "hub": "redis" if _hub_backplane_url(settings) else "memory",
        "role": settings.role,
    }


def _check_supported(settings: Settings) -> None:
    if not settings.broker_url.startswith(("memory://", "amqp://", "amqps://")):
        raise ValueError(f"unsupported broker_url {settings.broker_url!r}: memory:// or amqp://")
    if not settings.cache_url.startswith(("memory://", "redis://", "rediss://")):
        raise ValueError(f"unsupported cache_url {settings.cache_url!r}: memory:// or redis://")
    if settings.role != "all" and not settings.broker_url.startswith("amqp"):
        raise ValueError(
            f"role {settings.role!r} runs as its own process and needs a shared broker: "
            "set HEALTHFLOW_BROKER_URL=amqp://..."
        )


@dataclass(frozen=True)
class Security:
    """Token checks, the audit trail and PHI keys; `dev_tokens` is None when an issuer is set."""

    verifier: TokenVerifier
    dev_tokens: DevTokens | None
    audit: SqlAuditTrail
    keys: KeyRing
    cipher: FieldCipher


def dev_tokens(settings: Settings) -> DevTokens | None:
    """The development token minter, or None when an OIDC issuer (JWKS) is configured."""
    if settings.auth_jwks_url:
        return None
    secret = (
        settings.auth_secret.get_secret_value().encode()
        if settings.auth_secret
        else load_or_create_secret(settings.data_dir / "auth_secret")
    )
    return DevTokens(
        secret,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        roles_claim=settings.auth_roles_claim,
        leeway_s=settings.auth_leeway_s,
    )


def build_verifier(settings: Settings) -> TokenVerifier:
    """Development tokens (HS256) unless an OIDC issuer's JWKS is configured."""
    return dev_tokens(settings) or JwksTokens(
        settings.auth_jwks_url,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        roles_claim=settings.auth_roles_claim,
        leeway_s=settings.auth_leeway_s,
        cache_s=settings.auth_jwks_cache_s,
        timeout_s=settings.auth_jwks_timeout_s,
    )


def build_security(settings: Settings, clock: Clock, patients_db: Database) -> Security:
    minter = dev_tokens(settings)
    verifier = build_verifier(settings)
    key = settings.encryption_key
    index_key = settings.blind_index_key
    keys = KeyRing(
        settings.encryption_key_file or settings.data_dir / "keys.json",
        env_key=decode_key(key.get_secret_value(), "HEALTHFLOW_ENCRYPTION_KEY") if key else None,
        env_index_key=(
            decode_key(index_key.get_secret_value(), "HEALTHFLOW_BLIND_INDEX_KEY")
            if index_key
            else None
        ),
    )
    return Security(verifier, minter, SqlAuditTrail(patients_db, clock), keys, FieldCipher(keys))


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
            self._tasks.extend(await self.telemetry.start(self.patients_db, self.analytics_db))
        if self.metrics_feed is not None:
            self._tasks.append(asyncio.create_task(self.metrics_feed.run(), name="metrics-feed"))
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
    hub: Hub,
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
    patients_db = _patients_database(settings)
    analytics_db = open_database(
        settings.analytics_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    hub = _build_hub(settings)
    cache = _cache(settings)
    bus = _event_bus(settings, clock, patients_db)
    security = build_security(settings, clock, patients_db)
    outbox = SqlOutbox(patients_db, cipher=security.cipher)
    relay = OutboxRelay(
        outbox,
        bus,
        clock,
        batch_size=settings.outbox_batch_size,
        poll_interval_s=settings.outbox_poll_interval_s,
        max_in_flight=settings.outbox_max_in_flight,
        publish_timeout_s=settings.outbox_publish_timeout_s,
    )
    patient_store = SqlPatientStore(
        patients_db, cipher=security.cipher, audit=security.audit, on_commit=relay.wake
    )
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
    if settings.role != "all":
        return build_role_app(settings, clock)
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
        # every route passes the access guard; "function" scope: its audit record is written
        # before the response leaves, so no PHI is served unrecorded
        dependencies=[Depends(guard, scope="function")],
    )
    app.state.platform = platform
    app.state.patients = platform.patients
    app.state.analytics = platform.analytics
    app.state.hub = platform.hub
    app.state.readiness = platform.readiness
    app.state.audit = platform.security.audit
    app.state.dev_tokens = platform.security.dev_tokens
    app.state.live_access = live_access
    app.state.guard = Guard(
        platform.security.verifier,
        platform.security.audit,
        platform.patient_store.ward_of,
        per_client=RateLimiter(settings.rate_limit_client_per_minute),
        per_subject=RateLimiter(settings.rate_limit_subject_per_minute),
    )
    document_security(app)
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
    app.include_router(audit_api.router)
    app.include_router(audit_api.dev_router)
    app.include_router(ingest_http.router)
    app.include_router(vitals_api.router)
    app.include_router(sse.router)
    mount_dashboard(app, settings.web_dir or DEFAULT_DIST)
    app.add_middleware(RequestTimeout, timeout_s=settings.request_timeout_s)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext)
    app.add_middleware(SecurityHeaders)
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allow_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "X-Request-ID"],
            expose_headers=["ETag", "Location", "X-Request-ID", "Retry-After"],
        )
    return app


# --- issue 3: adapters chosen by URL, migrations, and the roles of the multi-process topology ---


def _patients_database(settings: Settings) -> Database:
    return open_database(
        settings.database_url,
        read_url=settings.database_read_url or None,
        sqlite_synchronous=settings.sqlite_synchronous,
    )


def _event_bus(
    settings: Settings,
    clock: Clock,
    dead_letter_db: Database | None,
    *,
    declare_groups: tuple[str, ...] = (ANALYTICS_GROUP,),
    live_groups: tuple[str, ...] = (),
) -> EventBus:
    if settings.broker_url.startswith("amqp"):
        return RabbitBus(
            settings.broker_url,
            clock=clock,
            exchange=settings.broker_exchange,
            retry_delays_s=settings.bus_retry_delays_s,
            prefetch=settings.broker_prefetch,
            declare_groups=declare_groups,
            live_groups=live_groups,
            connection_name=f"healthflow-{settings.role}-{os.getpid()}",
        )
    if dead_letter_db is None:
        raise ValueError("the in-process bus keeps dead letters in the patients database")
    return MemoryBus(
        dead_letters=SqlDeadLetterStore(dead_letter_db),
        clock=clock,
        retry_delays_s=settings.bus_retry_delays_s,
    )


def _cache(settings: Settings) -> Cache:
    if settings.cache_url.startswith("redis"):
        return RedisCache(settings.cache_url, prefix=settings.cache_prefix)
    return MemoryCache(max_entries=settings.cache_max_entries)


async def _close_cache(cache: Cache | None) -> None:
    if isinstance(cache, RedisCache):
        await cache.close()


def _critical_checks(cache: Cache) -> dict[str, Callable[[], Awaitable[Check]]]:
    return {"cache": cache.check} if isinstance(cache, RedisCache) else {}


async def _migrate(db: Database, schema: migrations.Schema) -> None:
    # embedded default: migrate on start; a server database is migrated by `healthflow db
    # upgrade` (a deploy step), and a process refuses to start on a schema that is behind
    if db.backend == "sqlite":
        await migrations.upgrade(db, schema)
    else:
        await migrations.require_current(db, schema)


async def migrate_databases(settings: Settings) -> dict[str, str]:
    """`healthflow db upgrade`: bring both schemas to their newest revision."""
    done: dict[str, str] = {}
    for name, url, schema in (
        ("patients", settings.database_url, migrations.PATIENTS),
        ("analytics", settings.analytics_url, migrations.ANALYTICS),
    ):
        db = open_database(url, sqlite_synchronous=settings.sqlite_synchronous)
        try:
            done[name] = await migrations.upgrade(db, schema)
        finally:
            await db.dispose()
    return done


def _service_client(
    base_url: str, settings: Settings, auth: httpx.Auth | None = None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        auth=auth,
        timeout=settings.service_timeout_s,
        limits=httpx.Limits(
            max_connections=settings.service_max_connections,
            max_keepalive_connections=settings.service_max_connections,
        ),
    )


@dataclass
class Lifecycle:
    """What one role's process starts, in order, and stops in reverse order."""

    starts: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    stops: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def background(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        async def start() -> None:
            task = asyncio.create_task(run(), name=name)
            task.add_done_callback(_report_crash)
            self.tasks.append(task)

        async def stop() -> None:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        self.starts.append(start)
        self.stops.append(stop)

    async def start(self) -> None:
        try:
            for step in self.starts:
                await step()
        except BaseException:
            await self.stop()  # release what the steps before the failure opened
            raise

    async def stop(self) -> None:
        for step in reversed(self.stops):
            try:
                await step()
            except Exception:
                log.exception("stop_step_failed")


def _no_ward(_: uuid.UUID) -> Awaitable[str | None]:
    async def none() -> str | None:
        return None

    return none()


def _guard(
    settings: Settings,
    security: Security | None,
    ward_of: Callable[[uuid.UUID], Awaitable[str | None]],
    permissions: Mapping[tuple[str, str], Rule] = PERMISSIONS,
) -> Guard:
    """The access guard of one process; without a patient database there is no audit trail,
    and no route there reads or changes patient data."""
    verifier = security.verifier if security else build_verifier(settings)
    return Guard(
        verifier,
        security.audit if security else None,
        ward_of,
        per_client=RateLimiter(settings.rate_limit_client_per_minute),
        per_subject=RateLimiter(settings.rate_limit_subject_per_minute),
        permissions=permissions,
    )


def _service_credentials(settings: Settings) -> httpx.Auth | None:
    """Bearer tokens one HealthFlow service presents to another (role `service`).

    With development tokens each call gets a fresh short-lived token; with an OIDC issuer the
    deployment must supply client-credentials tokens (not built yet: see docs/security.md).
    """
    minter = dev_tokens(settings)
    return ServiceCredentials(minter, subject=f"healthflow-{settings.role}") if minter else None


def _role_http_app(settings: Settings, life: Lifecycle, guard_: Guard) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await life.start()
        log.info("healthflow_started", version=__version__, backends=backends(settings))
        try:
            yield
        finally:
            await life.stop()
            log.info("healthflow_stopped", role=settings.role)

    app = FastAPI(
        title=f"HealthFlow {settings.role}",
        version=__version__,
        lifespan=lifespan,
        description=f"HealthFlow {settings.role} service.",
        dependencies=[Depends(guard, scope="function")],
    )
    app.state.guard = guard_
    app.state.live_access = live_access
    document_security(app)
    install_error_handlers(app)
    app.include_router(health.router)
    app.add_middleware(RequestTimeout, timeout_s=settings.request_timeout_s)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext)
    app.add_middleware(SecurityHeaders)
    return app


def build_role_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    """One service of the multi-process topology (`healthflow serve --role ...`)."""
    _check_supported(settings)
    builders = {
        "patients": _patients_role,
        "analytics": _analytics_role,
        "worker": _worker_role,
        "gateway": _gateway_role,
    }
    return builders[settings.role](settings, clock or SystemClock())


def _patients_role(settings: Settings, clock: Clock) -> FastAPI:
    life = Lifecycle()
    db = _patients_database(settings)
    hub = _build_hub(settings)  # with a backplane, the gateway's clients get its pushes
    life.starts.append(hub.start)
    life.stops.append(hub.close)
    bus = _event_bus(settings, clock, db)
    security = build_security(settings, clock, db)
    outbox = SqlOutbox(db, cipher=security.cipher)
    relay = OutboxRelay(
        outbox,
        bus,
        clock,
        batch_size=settings.outbox_batch_size,
        poll_interval_s=settings.outbox_poll_interval_s,
        max_in_flight=settings.outbox_max_in_flight,
    )
    store = SqlPatientStore(db, cipher=security.cipher, audit=security.audit, on_commit=relay.wake)

    async def open_stores() -> None:
        await _migrate(db, migrations.PATIENTS)
        await security.audit.prepare()
        await store.reencrypt_all()

    life.starts.append(open_stores)
    life.stops.append(db.dispose)
    life.starts.append(bus.start)
    life.stops.append(bus.close)
    life.stops.append(relay.stop)
    life.background("outbox-relay", relay.run)
    app = _role_http_app(settings, life, _guard(settings, security, store.ward_of))
    app.state.audit = security.audit
    app.include_router(audit_api.router)
    app.state.patients = PatientService(store, hub, clock)
    app.state.hub = hub
    app.state.readiness = Readiness(
        critical={"database": store.check, "event_bus": bus.check},
        outbox=outbox,
        queue=None,
        clock=clock,
        degraded_after_s=settings.outbox_degraded_after_s,
    )
    app.include_router(patients_api.router)
    app.include_router(websocket.router)
    return app


def _analytics_role(settings: Settings, clock: Clock) -> FastAPI:
    life = Lifecycle()
    db = open_database(settings.analytics_url, sqlite_synchronous=settings.sqlite_synchronous)
    hub = _build_hub(settings)  # with a backplane, the gateway's clients get its pushes
    life.starts.append(hub.start)
    life.stops.append(hub.close)
    cache = _cache(settings)
    store = SqlAnalyticsStore(db)

    async def open_stores() -> None:
        await _migrate(db, migrations.ANALYTICS)

    async def close_cache() -> None:
        await _close_cache(cache)

    life.starts.append(open_stores)
    life.stops.append(db.dispose)
    life.stops.append(close_cache)
    app = _role_http_app(settings, life, _guard(settings, None, _no_ward))
    app.state.analytics = AnalyticsService(
        store, cache, hub, clock, cache_ttl_s=settings.dashboard_cache_ttl_s
    )
    app.state.hub = hub
    app.state.readiness = Readiness(
        critical={"analytics_store": store.check, **_critical_checks(cache)},
        outbox=None,
        queue=None,
        clock=clock,
        degraded_after_s=settings.outbox_degraded_after_s,
    )
    app.include_router(analytics_api.router)
    app.include_router(websocket.router)
    return app


def _worker_role(settings: Settings, clock: Clock) -> FastAPI:
    life = Lifecycle()
    bus = _event_bus(settings, clock, None)
    client = _service_client(
        settings.analytics_service_url, settings, auth=_service_credentials(settings)
    )
    breaker = CircuitBreaker(
        "analytics", failures=settings.breaker_failures, reset_s=settings.breaker_reset_s
    )
    sink = HttpAnalyticsSink(client, breaker, attempts=settings.service_retries)

    async def handle(event: CloudEvent) -> None:
        await sink.record(event)

    pool = WorkerPool(
        ANALYTICS_GROUP, handle, workers=settings.worker_count, capacity=settings.worker_queue_size
    )
    bus.subscribe(ANALYTICS_GROUP, pool.submit)

    async def start_pool() -> None:
        pool.start()

    async def stop_pool() -> None:
        await pool.stop(settings.worker_shutdown_grace_s)

    life.stops.append(client.aclose)
    life.stops.append(bus.close)
    life.starts.append(start_pool)
    life.starts.append(bus.start)
    life.stops.append(stop_pool)
    app = _role_http_app(settings, life, _guard(settings, None, _no_ward))
    app.state.readiness = Readiness(
        critical={"event_bus": bus.check, "analytics_service": sink.check},
        outbox=None,
        queue=lambda: {"depth": pool.depth, "capacity": pool.capacity, "busy": pool.busy},
        clock=clock,
        degraded_after_s=settings.outbox_degraded_after_s,
    )
    return app


def _gateway_role(settings: Settings, clock: Clock) -> FastAPI:
    life = Lifecycle()
    hub = _build_hub(settings)
    life.starts.append(hub.start)
    life.stops.append(hub.close)
    live_group = f"live-{uuid.uuid4().hex[:12]}"
    # With a Redis backplane every service's pushes reach this hub through it; without one the
    # gateway feeds its own hub from the bus (patient events only: no EventProcessed).
    backplane = bool(_hub_backplane_url(settings))
    live_groups = () if backplane else (live_group,)
    bus = _event_bus(settings, clock, None, declare_groups=(), live_groups=live_groups)

    async def push(delivery: Delivery) -> None:
        # live push is best effort: the event's effect is carried by the outbox and the worker
        event = delivery.event
        try:
            await hub.broadcast(event.type, event.data, event.time)
        finally:
            await delivery.ack()

    if not backplane:
        bus.subscribe(live_group, push)
    patients = Upstream("patients", _service_client(settings.patients_service_url, settings))
    analytics = Upstream("analytics", _service_client(settings.analytics_service_url, settings))
    upstreams = [patients, analytics]
    if settings.worker_service_url:
        upstreams.append(Upstream("worker", _service_client(settings.worker_service_url, settings)))
    for upstream in upstreams:
        life.stops.append(upstream.client.aclose)
    life.starts.append(bus.start)
    life.stops.append(bus.close)
    app = _role_http_app(
        settings, life, _guard(settings, None, _no_ward, permissions=GATEWAY_PERMISSIONS)
    )
    app.state.hub = hub
    app.state.readiness = GatewayReadiness(upstreams, local={"event_bus": bus.check})
    app.include_router(gateway_proxy.router(patients, analytics))
    app.include_router(websocket.router)
    return app


def cluster_plan(settings: Settings) -> list[tuple[str, dict[str, str]]]:
    """`healthflow cluster`: each role's environment; the gateway on the configured port."""
    base = settings.port
    ports = {"gateway": base, "patients": base + 1, "analytics": base + 2, "worker": base + 3}

    def url(role: str) -> str:
        return f"http://{settings.host}:{ports[role]}"

    # every setting travels to the children, so they run with exactly the parent's configuration
    dumped = settings.model_dump(mode="json")
    shared: dict[str, str] = {}
    for name, value in dumped.items():
        raw = getattr(settings, name)
        if isinstance(raw, SecretStr):
            value = raw.get_secret_value()
        if value is not None:
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            shared[f"HEALTHFLOW_{name.upper()}"] = text
    shared.update(
        {
            "HEALTHFLOW_PATIENTS_SERVICE_URL": url("patients"),
            "HEALTHFLOW_ANALYTICS_SERVICE_URL": url("analytics"),
            "HEALTHFLOW_WORKER_SERVICE_URL": url("worker"),
        }
    )
    return [
        (role, {**shared, "HEALTHFLOW_ROLE": role, "HEALTHFLOW_PORT": str(ports[role])})
        for role in ("patients", "analytics", "worker", "gateway")
    ]


async def dead_letters(settings: Settings, *, group: str | None, limit: int) -> list[DeadLetter]:
    """`healthflow dlq`: read the configured bus's dead letters without consuming them."""
    db = _patients_database(settings)
    bus = _event_bus(settings, SystemClock(), db, declare_groups=())
    try:
        if isinstance(bus, MemoryBus):  # the embedded bus keeps them in the patients database
            await _migrate(db, migrations.PATIENTS)
        await bus.start()
        return await bus.dead_letters(group=group, limit=limit)
    finally:
        await bus.close()
        await db.dispose()
