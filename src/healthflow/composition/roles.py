"""The services as separate processes (`--role gateway|patients|analytics|worker`) and `cluster`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import structlog
from fastapi import Depends, FastAPI
from pydantic import SecretStr

from healthflow import __version__
from healthflow.analytics import api as analytics_api
from healthflow.analytics.client import HttpAnalyticsSink
from healthflow.analytics.service import AnalyticsService
from healthflow.analytics.store import SqlAnalyticsStore
from healthflow.circuit_breaker import CircuitBreaker
from healthflow.clock import SystemClock
from healthflow.composition.adapters import (
    ANALYTICS_GROUP,
    GROUP_TYPES,
    Security,
    _build_hub,
    _cache,
    _check_supported,
    _close_cache,
    _critical_checks,
    _event_bus,
    _hub_backplane_url,
    _migrate,
    _patients_database,
    _service_client,
    backends,
    build_security,
    build_verifier,
    dev_tokens,
    outbox_relay,
)
from healthflow.composition.platform import _report_crash
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
from healthflow.messaging.events import CloudEvent
from healthflow.messaging.worker import WorkerPool
from healthflow.observability import health
from healthflow.observability.health import Readiness
from healthflow.patients import api as patients_api
from healthflow.patients.service import PatientService
from healthflow.patients.store import SqlOutbox, SqlPatientStore
from healthflow.ports import Clock, Delivery
from healthflow.realtime import websocket
from healthflow.security import api as audit_api
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
    ServiceCredentials,
)
from healthflow.settings import Settings
from healthflow.storage import migrations
from healthflow.storage.engine import open_database
from healthflow.tasks import cancel_and_wait

log = structlog.get_logger(__name__)


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
            await cancel_and_wait(self.tasks)

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
    relay = outbox_relay(settings, outbox, bus, clock)
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
    bus.subscribe(ANALYTICS_GROUP, pool.submit, types=GROUP_TYPES[ANALYTICS_GROUP])

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
