"""The built dashboard at `/`: its files, index.html for client routes, server paths untouched."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from typer.testing import CliRunner

from healthflow.app import build_app
from healthflow.cli import app as cli
from healthflow.security.rbac import PERMISSIONS, allow
from healthflow.settings import Settings
from tests.conftest import mint_token

INDEX = "<!doctype html><title>HealthFlow</title><div id=root></div>"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_text(INDEX)
    (folder / "assets" / "app-1234.js").write_text("console.log('hi')")
    return folder


async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        admin = {"Authorization": f"Bearer {mint_token(app, 'admin')}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=admin
        ) as http:
            yield http


@pytest.fixture
async def web(
    make_settings: Callable[..., Settings], dist: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async for http in _client(build_app(make_settings(web_dir=dist))):
        yield http


async def test_root_serves_the_dashboard_and_asks_browsers_to_revalidate(
    web: httpx.AsyncClient,
) -> None:
    response = await web.get("/")
    assert response.status_code == 200
    assert response.text == INDEX
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"


async def test_built_assets_are_served_as_files(web: httpx.AsyncClient) -> None:
    response = await web.get("/assets/app-1234.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert response.text == "console.log('hi')"


@pytest.mark.parametrize("path", ["/patients/new", "/patients/0193/", "/analytics", "/operations"])
async def test_client_routes_get_index_html(web: httpx.AsyncClient, path: str) -> None:
    response = await web.get(path)
    assert response.status_code == 200
    assert response.text == INDEX


async def test_a_missing_asset_stays_a_404_not_html(web: httpx.AsyncClient) -> None:
    response = await web.get("/assets/gone-9999.js")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "path",
    ["/api", "/api/nothing-here", "/api/patients/x/y/z", "/health/nope", "/ws/extra", "/metrics/x"],
)
async def test_server_paths_are_never_answered_with_the_dashboard(
    web: httpx.AsyncClient, path: str
) -> None:
    response = await web.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


async def test_the_api_docs_and_schema_still_answer(web: httpx.AsyncClient) -> None:
    assert (await web.get("/openapi.json")).json()["info"]["title"] == "HealthFlow"
    assert "swagger" in (await web.get("/docs")).text.lower()
    assert (await web.get("/health")).json() == {"status": "alive"}
    assert (await web.get("/api/patients")).json()["items"] == []


async def test_other_methods_on_unknown_paths_get_a_plain_404(web: httpx.AsyncClient) -> None:
    response = await web.post("/patients/new", json={})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_paths_cannot_escape_the_dist_folder(web: httpx.AsyncClient, dist: Path) -> None:
    (dist.parent / "secret.txt").write_text("do not serve")
    for path in ("/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt"):
        response = await web.get(path)
        assert "do not serve" not in response.text


async def test_routes_added_after_the_dashboard_are_not_shadowed(
    make_settings: Callable[..., Settings], dist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PERMISSIONS, ("GET", "/api/added-later"), allow())
    app = build_app(make_settings(web_dir=dist))
    later = APIRouter()

    @later.get("/api/added-later")
    async def added_later() -> dict[str, str]:
        return {"route": "later"}

    app.include_router(later)
    async for http in _client(app):
        assert (await http.get("/api/added-later")).json() == {"route": "later"}


async def test_without_a_build_there_is_no_dashboard(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async for http in _client(build_app(make_settings(web_dir=tmp_path / "not-built"))):
        response = await http.get("/")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert (await http.get("/health")).status_code == 200


def test_the_committed_schema_the_dashboard_is_typed_from_matches_the_api(tmp_path: Path) -> None:
    # web/src/api/schema.d.ts is generated from web/openapi.json (npm run api:check verifies
    # that half); this half fails when the API changed and the schema was not dumped again
    out = tmp_path / "openapi.json"
    result = CliRunner().invoke(cli, ["openapi", "--output", str(out)])
    assert result.exit_code == 0, result.output
    committed = json.loads((REPO / "web" / "openapi.json").read_text())
    assert json.loads(out.read_text()) == committed, (
        "web/openapi.json is stale: run `healthflow openapi --output web/openapi.json` and "
        "`npm --prefix web run api:generate`, then commit both"
    )
