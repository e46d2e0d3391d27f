"""The composition root: reads Settings once, builds the adapters, wires services and routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from healthflow import __version__
from healthflow.analytics import api as analytics_api
from healthflow.analytics import store as analytics_schema
from healthflow.analytics.service import AnalyticsService
from healthflow.analytics.store import SqlAnalyticsStore
from healthflow.clock import SystemClock
from healthflow.http import (
    BodyLimit,
    RequestContext,
    RequestTimeout,
    SecurityHeaders,
    install_error_handlers,
)
from healthflow.messaging import dead_letters as dead_letter_schema
from healthflow.messaging.dead_letters import SqlDeadLetterStore
from healthflow.messaging.events import CloudEvent
from healthflow.messaging.memory import MemoryBus
from healthflow.messaging.outbox import OutboxRelay
from healthflow.messaging.worker import WorkerPool
from healthflow.observability import health
from healthflow.observability.health import Readiness
from healthflow.patients import api as patients_api
from healthflow.patients import store as patient_schema
from healthflow.patients.service import PatientService
from healthflow.patients.store import SqlOutbox, SqlPatientStore
from healthflow.ports import Clock, EventBus
from healthflow.realtime import websocket
from healthflow.realtime.hub import MemoryHub
from healthflow.security import api as audit_api
from healthflow.security import audit as audit_schema
from healthflow.security.audit import SqlAuditTrail
from healthflow.security.crypto import FieldCipher, KeyRing, decode_key
from healthflow.security.ratelimit import RateLimiter
from healthflow.security.rbac import Guard, document_security, guard
from healthflow.security.tokens import DevTokens, JwksTokens, TokenVerifier, load_or_create_secret
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
        "hub": "memory",
    }


def _check_supported(settings: Settings) -> None:
    if not settings.broker_url.startswith("memory://"):
        raise ValueError(f"unsupported broker_url {settings.broker_url!r}: only memory:// so far")
    if not settings.cache_url.startswith("memory://"):
        raise ValueError(f"unsupported cache_url {settings.cache_url!r}: only memory:// so far")


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


def build_security(settings: Settings, clock: Clock, patients_db: Database) -> Security:
    minter = dev_tokens(settings)
    verifier: TokenVerifier = minter or JwksTokens(
        settings.auth_jwks_url,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        roles_claim=settings.auth_roles_claim,
        leeway_s=settings.auth_leeway_s,
        cache_s=settings.auth_jwks_cache_s,
        timeout_s=settings.auth_jwks_timeout_s,
    )
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
    hub: MemoryHub
    patient_store: SqlPatientStore
    patients: PatientService
    analytics: AnalyticsService
    pool: WorkerPool
    relay: OutboxRelay
    readiness: Readiness
    security: Security
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def prepare_storage(self) -> None:
        """Create missing tables (and the audit chain's head); safe at every start."""
        await self.patients_db.create_schema(patient_schema.metadata)
        await self.patients_db.create_schema(dead_letter_schema.metadata)
        await self.analytics_db.create_schema(analytics_schema.metadata)
        await self.patients_db.create_schema(audit_schema.metadata)
        await self.security.audit.prepare()

    async def start(self) -> None:
        await self.prepare_storage()
        await self.bus.start()
        self.pool.start()
        self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        for task in self._tasks:
            task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        # stop intake first, let workers finish what they hold, then release connections
        await self.pool.stop(self.settings.worker_shutdown_grace_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.relay.stop()
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
    hub = MemoryHub(send_queue_size=settings.hub_send_queue_size)
    cache = MemoryCache(max_entries=settings.cache_max_entries)
    bus = MemoryBus(
        dead_letters=SqlDeadLetterStore(patients_db),
        clock=clock,
        retry_delays_s=settings.bus_retry_delays_s,
    )
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
        await analytics.record(event)

    async def handle_batch(batch: Sequence[CloudEvent]) -> None:
        await analytics.record_many(batch)

    pool = WorkerPool(
        ANALYTICS_GROUP,
        handle,
        workers=settings.worker_count,
        capacity=settings.worker_queue_size,
        batch_handler=handle_batch,
        max_batch=settings.worker_batch_size,
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
        security,
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
    app.state.guard = Guard(
        platform.security.verifier,
        platform.security.audit,
        platform.patient_store.ward_of,
        per_client=RateLimiter(settings.rate_limit_client_per_minute),
        per_subject=RateLimiter(settings.rate_limit_subject_per_minute),
    )
    document_security(app)
    install_error_handlers(app)
    app.include_router(patients_api.router)
    app.include_router(analytics_api.router)
    app.include_router(health.router)
    app.include_router(websocket.router)
    app.include_router(audit_api.router)
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
