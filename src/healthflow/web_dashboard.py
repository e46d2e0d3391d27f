"""Serves the built clinical dashboard (web/dist) at `/`, with index.html for client routes."""

from __future__ import annotations

from pathlib import Path

import structlog
from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

log = structlog.get_logger(__name__)

# Paths the server owns: never answered with the dashboard, so an unknown API path stays a 404
# problem+json instead of a 200 HTML page a client would misread.
RESERVED_PREFIXES = ("/api", "/ws", "/health", "/metrics", "/docs", "/redoc", "/openapi.json")
# Where `npm run build` writes, relative to a source checkout (src/healthflow/ -> repo root).
DEFAULT_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"


def is_reserved(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in RESERVED_PREFIXES)


class DashboardFiles(StaticFiles):
    """Static files with a single-page-app fallback: an unknown non-file path gets index.html."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if is_reserved(scope["path"]):
            raise StarletteHTTPException(404, "Not Found")
        try:
            response = await super().get_response(path, scope)
        except StarletteHTTPException as exc:
            if exc.status_code != 404 or _looks_like_file(path):
                raise
            response = await super().get_response("index.html", scope)
        if path in ("", ".", "index.html") or response.media_type == "text/html":
            # index.html names the hashed bundles: always revalidate it so a deploy shows at once
            response.headers["Cache-Control"] = "no-cache"
        return response


def _looks_like_file(path: str) -> bool:
    # a missing /assets/x.js must stay 404, not become HTML the browser fails to parse as JS
    return "." in path.rsplit("/", 1)[-1]


class DashboardFallback:
    """The router's answer when no route matched: GET/HEAD go to the dashboard files, anything
    else (other methods, WebSockets) gets the router's own 404."""

    def __init__(self, files: DashboardFiles, not_found: ASGIApp) -> None:
        self.files = files
        self.not_found = not_found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            await self.files(scope, receive, send)
        else:
            await self.not_found(scope, receive, send)


def mount_dashboard(app: FastAPI, dist: Path) -> bool:
    """Serve the dashboard at `/` if it has been built.

    It is the router's fallback rather than a `Mount("/")`: a mount at `/` would shadow every
    route included after it, so the order of `include_router` lines would start to matter.
    """
    if not (dist / "index.html").is_file():
        log.info("dashboard_not_built", web_dir=str(dist), hint="make run builds it")
        return False
    files = DashboardFiles(directory=dist, html=True)
    app.router.default = DashboardFallback(files, app.router.default)
    return True
