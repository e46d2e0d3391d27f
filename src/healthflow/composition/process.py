"""What every role's process shares: start/stop order, the HTTP app shell, its access guard."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.telemetry import TelemetryConfig

from healthflow import __version__
from healthflow.composition.adapters import (
    Security,
    backends,
    browser_connect_origins,
    build_verifier,
    dev_tokens,
    request_budgets,
)
from healthflow.composition.platform import _report_crash
from healthflow.http import install_error_handlers
from healthflow.http_edge import HttpEdge
from healthflow.observability import health
from healthflow.security.audit import SqlAuditTrail
from healthflow.security.live import live_access
from healthflow.security.rbac import PERMISSIONS, Guard, Rule, document_security, guard
from healthflow.security.tokens import ServiceCredentials
from healthflow.settings import Settings
from healthflow.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

# HealthFlow's metrics are Prometheus and its logs structlog, and it configures no OpenTelemetry
# SDK: FastAPI's built-in OpenTelemetry bridge would only look, on every request, for providers
# that are never there (BENCHMARKS.md, "Per-request cost of the HTTP stack").
WITHOUT_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


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
    audit: SqlAuditTrail | None,
    ward_of: Callable[[uuid.UUID], Awaitable[str | None]],
    permissions: Mapping[tuple[str, str], Rule] = PERMISSIONS,
    security: Security | None = None,
) -> Guard:
    """The access guard of one process; a process without an audit trail (gateway, worker)
    serves no route that reads or changes patient data."""
    verifier = security.verifier if security else build_verifier(settings)
    per_client, per_subject = request_budgets(settings)
    return Guard(
        verifier,
        audit,
        ward_of,
        per_client=per_client,
        per_subject=per_subject,
        permissions=permissions,
    )


def _service_credentials(settings: Settings) -> httpx.Auth | None:
    """Bearer tokens one HealthFlow service presents to another (role `service`).

    With development tokens each call gets a fresh short-lived token; with an OIDC issuer the
    deployment must supply client-credentials tokens (not built yet: see docs/security.md).
    """
    minter = dev_tokens(settings)
    return ServiceCredentials(minter, subject=f"healthflow-{settings.role}") if minter else None


def install_middleware(app: FastAPI, settings: Settings, *, browser_facing: bool) -> None:
    """The middleware of every process; the one browsers talk to (`all`, gateway) also lets the
    dashboard's scripts reach the OIDC issuer and answers CORS for the configured origins."""
    origins = browser_connect_origins(settings) if browser_facing else ()
    app.add_middleware(
        HttpEdge,
        timeout_s=settings.request_timeout_s,
        max_body_bytes=settings.max_body_bytes,
        connect_origins=origins,
    )
    if browser_facing and settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allow_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "X-Request-ID"],
            expose_headers=["ETag", "Location", "X-Request-ID", "Retry-After"],
        )


def _role_http_app(
    settings: Settings, life: Lifecycle, guard_: Guard, *, browser_facing: bool = False
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await life.start()
        log.info("healthflow_started", version=__version__, backends=backends(settings))
        try:
            yield
        finally:
            await life.stop()
            await guard_.close()
            log.info("healthflow_stopped", role=settings.role)

    app = FastAPI(
        title=f"HealthFlow {settings.role}",
        version=__version__,
        lifespan=lifespan,
        description=f"HealthFlow {settings.role} service.",
        dependencies=[Depends(guard, scope="function")],
        telemetry=WITHOUT_OPENTELEMETRY,
    )
    app.state.guard = guard_
    app.state.live_access = live_access
    document_security(app)
    install_error_handlers(app)
    app.include_router(health.router)
    install_middleware(app, settings, browser_facing=browser_facing)
    return app
