"""Live push is best effort after commit: a dead backplane never fails a registration."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from healthflow.app import build_app
from healthflow.settings import Settings
from tests.conftest import auth_headers, patient_body
from tests.e2e.live import free_port


async def test_registration_succeeds_while_the_backplane_is_unreachable(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        hub_backplane_url=f"redis://127.0.0.1:{free_port()}/0",
        hub_publish_timeout_s=0.5,
        hub_metrics_interval_s=3600.0,
    )
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=auth_headers(app)
        ) as http:
            created = await http.post("/api/patients", json=patient_body())
            assert created.status_code == 201
            fetched = await http.get(f"/api/patients/{created.json()['id']}")
            assert fetched.status_code == 200
    assert app.state.hub.backend == "redis"
    assert app.state.hub.fanout.head == 0
