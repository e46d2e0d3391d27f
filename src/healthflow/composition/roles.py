"""The services as separate processes (`--role gateway|patients|analytics|worker`) and `cluster`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import orjson
import structlog
from fastapi import FastAPI
from pydantic import SecretStr

from healthflow.analytics.client import HttpAnalyticsSink
from healthflow.analytics.service import AnalyticsService
from healthflow.analytics.store import SqlAnalyticsStore
from healthflow.circuit_breaker import CircuitBreaker
from healthflow.clock import SystemClock
from healthflow.composition.adapters import (
    ANALYTICS_GROUP,
    GROUP_TYPES,
    VITALS_GROUP,
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
    build_security,
    database,
    dev_tokens,
    mqtt_ingest,
    outbox_relay,
    sign_in_config,
    telemetry_intake,
)
from healthflow.composition.process import (
    Lifecycle,
    _guard,
    _no_ward,
    _role_http_app,
    _service_credentials,
)
from healthflow.composition.served import (
    GATEWAY_ROUTERS,
    SERVICE_ROUTERS,
    forwarded_routes,
    gateway_own_routes,
)
from healthflow.gateway import proxy as gateway_proxy
from healthflow.gateway.health import GatewayReadiness
from healthflow.gateway.proxy import Upstream
from healthflow.messaging.events import CloudEvent
from healthflow.messaging.worker import WorkerPool
from healthflow.observability.health import Readiness
from healthflow.patients import events as patient_events
from healthflow.patients.service import PatientService
from healthflow.patients.store import SqlOutbox, SqlPatientStore
from healthflow.ports import Clock, Delivery
from healthflow.security.audit import SqlAuditTrail
from healthflow.security.rbac import gateway_permissions
from healthflow.service_calls import ServiceCaller
from healthflow.settings import Settings
from healthflow.storage import migrations
from healthflow.vitals import api as vitals_api
from healthflow.vitals import ingest_http
from healthflow.vitals.clients import HttpAssessor, HttpCriticalStatus, HttpDeviceMessages
from healthflow.vitals.escalation import Escalation
from healthflow.vitals.monitor import VitalsMonitor
from healthflow.vitals.store import SqlVitalsStore
from healthflow.web_dashboard import DEFAULT_DIST, mount_dashboard

log = structlog.get_logger(__name__)


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
    # publishes only: with a backplane the gateway's clients get its pushes (the gateway alone
    # serves /ws and /api/stream, so this process never tails the stream for clients of its own)
    hub = _build_hub(settings, serves_clients=False)
    life.starts.append(hub.start)
    life.stops.append(hub.close)
    bus = _event_bus(settings, clock, db)
    security = build_security(settings, clock, db)
    outbox = SqlOutbox(db, cipher=security.cipher)
    relay = outbox_relay(settings, outbox, bus, clock, db)
    store = SqlPatientStore(
        db, cipher=security.cipher, audit=security.audit, on_commit=relay.committed
    )
    patients = PatientService(store, hub, clock)
    # devices, the telemetry intake and its outbox live in the patients database (issue 4)
    devices, intake, telemetry_relay = telemetry_intake(settings, clock, db, bus, patients)

    async def open_stores() -> None:
        await _migrate(db, migrations.PATIENTS)
        await security.audit.prepare()
        await store.reencrypt_all()

    life.starts.append(open_stores)
    life.stops.append(db.dispose)
    life.starts.append(bus.start)
    life.stops.append(bus.close)
    life.stops.append(relay.stop)
    life.stops.append(telemetry_relay.stop)
    life.background("outbox-relay", relay.run)
    life.background("telemetry-relay", telemetry_relay.run)
    app = _role_http_app(
        settings, life, _guard(settings, security.audit, store.ward_of, security=security)
    )
    app.state.audit = security.audit
    app.state.sign_in = sign_in_config(settings)
    app.state.patients = patients
    app.state.devices = devices
    app.state.telemetry = intake
    app.state.readiness = Readiness(
        critical={
            "database": store.check,
            "event_bus": bus.check,
            "telemetry_intake": intake.check,
        },
        outbox=outbox,
        queue=None,
        clock=clock,
        degraded_after_s=settings.outbox_degraded_after_s,
    )
    vitals_api.install_error_handlers(app)
    ingest_http.document_body(app)
    for api_router in SERVICE_ROUTERS["patients"]:
        app.include_router(api_router)
    return app


def _analytics_role(settings: Settings, clock: Clock) -> FastAPI:
    life = Lifecycle()
    db = database(settings, settings.analytics_url)
    # publishes only: with a backplane the gateway's clients get its pushes (the gateway alone
    # serves /ws and /api/stream, so this process never tails the stream for clients of its own)
    hub = _build_hub(settings, serves_clients=False)
    life.starts.append(hub.start)
    life.stops.append(hub.close)
    cache = _cache(settings)
    store = SqlAnalyticsStore(db)
    # vitals, NEWS2 and alerts are read and acknowledged here: audited in this database's chain
    audit = SqlAuditTrail(db, clock)

    async def open_stores() -> None:
        await _migrate(db, migrations.ANALYTICS)
        await audit.prepare()

    async def close_cache() -> None:
        await _close_cache(cache)

    life.starts.append(open_stores)
    life.stops.append(db.dispose)
    life.stops.append(close_cache)
    # a nurse's ward limit is checked on the projection's ward (the patient's own is not here)
    app = _role_http_app(settings, life, _guard(settings, audit, store.ward_of))
    vitals = SqlVitalsStore(db)
    analytics = AnalyticsService(
        store, cache, hub, clock, alerts=vitals, cache_ttl_s=settings.dashboard_cache_ttl_s
    )
    app.state.analytics = analytics
    app.state.vitals_monitor = VitalsMonitor(vitals, analytics, hub, clock)
    app.state.audit = audit
    app.state.readiness = Readiness(
        critical={"analytics_store": store.check, **_critical_checks(cache)},
        outbox=None,
        queue=None,
        clock=clock,
        degraded_after_s=settings.outbox_degraded_after_s,
    )
    vitals_api.install_error_handlers(app)
    for api_router in SERVICE_ROUTERS["analytics"]:
        app.include_router(api_router)
    return app


def _worker_role(settings: Settings, clock: Clock) -> FastAPI:
    life = Lifecycle()
    bus = _event_bus(settings, clock, None)
    credentials = _service_credentials(settings)
    analytics = ServiceCaller(
        "analytics",
        _service_client(settings.analytics_service_url, settings, auth=credentials),
        CircuitBreaker(
            "analytics", failures=settings.breaker_failures, reset_s=settings.breaker_reset_s
        ),
        attempts=settings.service_retries,
    )
    patients = ServiceCaller(
        "patients",
        _service_client(settings.patients_service_url, settings, auth=credentials),
        CircuitBreaker(
            "patients", failures=settings.breaker_failures, reset_s=settings.breaker_reset_s
        ),
        attempts=settings.service_retries,
    )
    sink = HttpAnalyticsSink(analytics.client, analytics.breaker, attempts=settings.service_retries)

    async def handle(event: CloudEvent) -> None:
        await sink.record(event)

    async def handle_batch(batch: Sequence[CloudEvent]) -> None:
        await sink.record_many(batch)

    escalation = Escalation(HttpAssessor(analytics), HttpCriticalStatus(patients))
    pools = [
        # patient events: recorded on analytics, one call for what a worker took from its queue
        WorkerPool(
            ANALYTICS_GROUP,
            handle,
            workers=settings.worker_count,
            capacity=settings.worker_queue_size,
            batch_handler=handle_batch,
            max_batch=settings.worker_batch_size,
        ),
        # readings: scored on analytics (one call for what a worker took from its queue), then
        # (once per critical alert) the patient marked
        WorkerPool(
            VITALS_GROUP,
            escalation.handle,
            workers=settings.worker_count,
            capacity=settings.worker_queue_size,
            batch_handler=escalation.handle_batch,
            max_batch=settings.worker_batch_size,
        ),
    ]
    for pool in pools:
        bus.subscribe(pool.name, pool.submit, types=GROUP_TYPES[pool.name])
    # devices publish to MQTT; their messages go into the patients service's durable intake
    intake_client = _service_client(settings.patients_service_url, settings, auth=credentials)
    mqtt = mqtt_ingest(
        settings, HttpDeviceMessages(intake_client, max_body_bytes=settings.max_body_bytes)
    )

    async def start_pools() -> None:
        for pool in pools:
            pool.start()

    async def stop_pools() -> None:
        await asyncio.gather(*(p.stop(settings.worker_shutdown_grace_s) for p in pools))

    for client in (analytics.client, patients.client, intake_client):
        life.stops.append(client.aclose)
    life.stops.append(bus.close)
    life.starts.append(start_pools)
    life.starts.append(bus.start)
    life.stops.append(stop_pools)
    if mqtt is not None:
        # started last and stopped first: no new messages while the pools drain
        life.background("mqtt-ingest", mqtt.run)
    app = _role_http_app(settings, life, _guard(settings, None, _no_ward))

    def queues() -> dict[str, int]:
        return {
            "depth": sum(p.depth for p in pools),
            "capacity": sum(p.capacity for p in pools),
            "busy": sum(p.busy for p in pools),
        }

    app.state.readiness = Readiness(
        critical={
            "event_bus": bus.check,
            "analytics_service": analytics.check,
            "patients_service": patients.check,
        },
        outbox=None,
        queue=queues,
        clock=clock,
        degraded_after_s=settings.outbox_degraded_after_s,
        degrading={"mqtt": mqtt.check} if mqtt is not None else {},
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
            if event.type in patient_events.TYPES:  # raw readings are no live message
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
    by_name = {u.name: u for u in upstreams}
    forwards = {key: by_name[service] for key, service in forwarded_routes().items()}
    permissions = gateway_permissions(gateway_own_routes(), forwards)
    app = _role_http_app(
        settings,
        life,
        _guard(settings, None, _no_ward, permissions=permissions),
        browser_facing=True,
    )
    app.state.hub = hub
    app.state.dev_tokens = dev_tokens(settings)
    app.state.readiness = GatewayReadiness(upstreams, local={"event_bus": bus.check})
    for own_router in GATEWAY_ROUTERS:
        app.include_router(own_router)
    app.include_router(gateway_proxy.router(forwards))
    mount_dashboard(app, settings.web_dir or DEFAULT_DIST)
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
    # the MQTT subscriber belongs to the worker: the other roles get the URL cleared, so an
    # inherited HEALTHFLOW_MQTT_URL cannot make them look as if they subscribed
    mqtt = {"worker": settings.mqtt_url}
    return [
        (
            role,
            {
                **shared,
                "HEALTHFLOW_ROLE": role,
                "HEALTHFLOW_PORT": str(ports[role]),
                "HEALTHFLOW_MQTT_URL": mqtt.get(role, ""),
            },
        )
        for role in ("patients", "analytics", "worker", "gateway")
    ]
