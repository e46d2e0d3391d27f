"""The composition root: reads Settings once, builds the adapters, wires services and routes.

`build_app` is the ASGI app of `healthflow serve`; the wiring lives in `healthflow.composition`
(adapters by URL, the one-process platform, the separate roles).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import Depends, FastAPI

from healthflow import __version__
from healthflow.analytics import api as analytics_api
from healthflow.composition.adapters import (
    ANALYTICS_GROUP,
    backends,
    dead_letters,
    dev_tokens,
    migrate_databases,
    request_budgets,
    sign_in_config,
)
from healthflow.composition.platform import Platform, build_platform
from healthflow.composition.process import WITHOUT_OPENTELEMETRY, install_middleware
from healthflow.composition.roles import build_role_app, cluster_plan
from healthflow.http import install_error_handlers
from healthflow.observability import health
from healthflow.patients import api as patients_api
from healthflow.ports import Clock
from healthflow.realtime import sse, websocket
from healthflow.security import api as audit_api
from healthflow.security.live import live_access
from healthflow.security.rbac import (
    Guard,
    document_security,
    guard,
)
from healthflow.settings import Settings
from healthflow.vitals import api as vitals_api
from healthflow.vitals import ingest_http
from healthflow.web_dashboard import DEFAULT_DIST, mount_dashboard

log = structlog.get_logger(__name__)

__all__ = [
    "ANALYTICS_GROUP",
    "Platform",
    "backends",
    "build_app",
    "build_platform",
    "cluster_plan",
    "dead_letters",
    "dev_tokens",
    "migrate_databases",
]


def build_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    """The ASGI app for `healthflow serve`; the platform starts and stops with its lifespan."""
    if settings.role != "all":
        return build_role_app(settings, clock)
    platform = build_platform(settings, clock)
    per_client, per_subject = request_budgets(settings)
    guard_ = Guard(
        platform.security.verifier,
        platform.security.audit,
        platform.patient_store.ward_of,
        per_client=per_client,
        per_subject=per_subject,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await platform.start()
        log.info("healthflow_started", version=__version__, backends=backends(settings))
        try:
            yield
        finally:
            await platform.stop()
            await guard_.close()
            log.info("healthflow_stopped")

    app = FastAPI(
        title="HealthFlow",
        version=__version__,
        lifespan=lifespan,
        description="Real-time patient flow and bedside monitoring.",
        # every route passes the access guard; it audits a route's outcome right after the route
        # function (before the response leaves), so no PHI is served unrecorded
        dependencies=[Depends(guard, scope="function")],
        telemetry=WITHOUT_OPENTELEMETRY,
    )
    app.state.platform = platform
    app.state.patients = platform.patients
    app.state.analytics = platform.analytics
    app.state.hub = platform.hub
    app.state.readiness = platform.readiness
    app.state.audit = platform.security.audit
    app.state.dev_tokens = platform.security.dev_tokens
    app.state.sign_in = sign_in_config(settings)
    app.state.live_access = live_access
    app.state.guard = guard_
    document_security(app)
    if platform.telemetry is not None:
        app.state.devices = platform.telemetry.devices
        app.state.telemetry = platform.telemetry.intake
        app.state.vitals_monitor = platform.telemetry.monitor
        vitals_api.install_error_handlers(app)
        ingest_http.document_body(app)
    install_error_handlers(app)
    # FastAPI tries the included routers in this order on every request: the busiest first
    app.include_router(patients_api.router)
    app.include_router(ingest_http.router)
    app.include_router(analytics_api.router)
    app.include_router(health.router)
    app.include_router(websocket.router)
    app.include_router(audit_api.router)
    app.include_router(audit_api.dev_router)
    app.include_router(audit_api.auth_router)
    app.include_router(vitals_api.devices_router)
    app.include_router(vitals_api.monitor_router)
    app.include_router(sse.router)
    mount_dashboard(app, settings.web_dir or DEFAULT_DIST)
    install_middleware(app, settings, browser_facing=True)
    return app
