"""Logs carry no PHI and no credentials: a full run with a planted name leaves no trace of it."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator

import httpx
import pytest
import structlog
from fastapi import FastAPI
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from healthflow.observability.logs import configure
from healthflow.security.redaction import MASK, redact_phi
from tests.conftest import eventually, mint_token, patient_body

PLANTED = {
    "given_name": "Wilhelmina",
    "family_name": "Zoltanovic",
    "birth_date": "1949-02-28",
    "mrn": "MRN-31337",
}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure("debug", "json", stream=stream, cache=False)
    yield stream
    structlog.reset_defaults()


async def test_a_full_patient_flow_logs_no_phi_and_no_token(
    captured: io.StringIO,
    app: FastAPI,
    client: httpx.AsyncClient,
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    created = await client.post("/api/patients", json=patient_body(**PLANTED))
    patient_id = created.json()["id"]
    await client.get(f"/api/patients/{patient_id}")
    await client.get("/api/patients", params={"ward": "ICU"})
    await client.put(
        f"/api/patients/{patient_id}/status",
        json={"status": "in_treatment", "reason": "seen by triage"},
    )
    await client.post("/api/patients", json=patient_body(**PLANTED))  # 409: MRN taken
    await make_client("nurse", ward="X").get(f"/api/patients/{patient_id}")  # 403
    token = mint_token(app, "clinician")
    transport = ASGIWebSocketTransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as ws_http,
        aconnect_ws(f"http://testserver/ws?access_token={token}", ws_http),
    ):
        pass

    async def processed() -> bool:
        summary = (await client.get("/api/analytics/dashboard")).json()
        return bool(summary["events_processed_total"] == 2)

    await eventually(processed)
    structlog.get_logger("test").info("run_finished")  # the capture works at all
    logs = captured.getvalue()
    assert "run_finished" in logs
    assert "healthflow_started" in logs
    for value in [*PLANTED.values(), token]:
        assert value not in logs


async def test_phi_bound_to_a_log_line_by_mistake_is_masked(captured: io.StringIO) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    structlog.get_logger("test").warning(
        "careless",
        given_name="Wilhelmina",
        patient={"mrn": "MRN-31337", "birth_date": "1949-02-28", "ward": "ICU"},
        path="/ws?access_token=secret-value",
        note=f"Authorization: Bearer {token}",
    )
    line = json.loads(captured.getvalue().strip().splitlines()[-1])
    assert line["given_name"] == MASK
    assert line["patient"] == {"mrn": MASK, "birth_date": MASK, "ward": "ICU"}
    assert "secret-value" not in line["path"]
    assert token not in line["note"]


def test_the_processor_masks_known_keys_at_any_depth() -> None:
    event = {"event": "x", "rows": [{"family_name": "Z", "status": "ok"}], "token": "t"}
    assert redact_phi(None, "info", event) == {
        "event": "x",
        "rows": [{"family_name": MASK, "status": "ok"}],
        "token": MASK,
    }
