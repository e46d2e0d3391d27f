"""The audit trail: who did what, recorded with the change itself, and tamper-evident."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from healthflow.cli import app as cli
from healthflow.security.audit import SYSTEM, AuditEntry, SqlAuditTrail, current_actor
from healthflow.settings import Settings
from tests.conftest import patient_body


def trail(app: FastAPI) -> SqlAuditTrail:
    audit: SqlAuditTrail = app.state.audit
    return audit


def raw(settings: Settings) -> sqlite3.Connection:
    return sqlite3.connect(settings.data_dir / "patients.db", timeout=10)


async def tamper(settings: Settings, *statements: str, params: tuple[object, ...] = ()) -> None:
    """Edit the database behind the app's back, as an attacker with file access would.

    In a thread, so the app's event loop can finish any write it has begun (a blocked loop would
    hold SQLite's write lock against us); BEGIN IMMEDIATE takes the lock before reading.
    """
    await asyncio.to_thread(_tamper, settings, statements, params)


def _tamper(settings: Settings, statements: tuple[str, ...], params: tuple[object, ...]) -> None:
    db = sqlite3.connect(settings.data_dir / "patients.db", timeout=10, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        for statement in statements:
            db.execute(statement, params if "?" in statement else ())
        db.execute("COMMIT")
    finally:
        db.close()


async def audit_items(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/audit", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_registration_is_recorded_with_who_when_and_the_request_id(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post(
        "/api/patients", json=patient_body(), headers={"X-Request-ID": "req-123"}
    )
    patient_id = created.json()["id"]
    [record] = await audit_items(client, patient_id=patient_id)
    assert record["action"] == "patient.create"
    assert record["subject"] == "test-admin"
    assert record["role"] == "admin"
    assert record["outcome"] == "success"
    assert record["request_id"] == "req-123"
    assert record["client"] == "127.0.0.1"
    assert record["resource_type"] == "patient"


async def test_reads_refusals_and_failures_are_recorded(
    client: httpx.AsyncClient, make_client: Callable[..., httpx.AsyncClient]
) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body(ward="A"))).json()["id"]
    assert (await client.get(f"/api/patients/{patient_id}")).status_code == 200
    nurse = make_client("nurse", sub="nina", ward="B")
    assert (await nurse.get(f"/api/patients/{patient_id}")).status_code == 403
    refused = await client.put(f"/api/patients/{patient_id}/status", json={"status": "stable"})
    assert refused.status_code == 409

    records = await audit_items(client, patient_id=patient_id)
    outcomes = [(r["action"], r["subject"], r["outcome"]) for r in records]
    assert outcomes == [
        ("patient.create", "test-admin", "success"),
        ("GET /api/patients/{patient_id}", "test-admin", "success"),
        ("GET /api/patients/{patient_id}", "nina", "denied"),
        ("PUT /api/patients/{patient_id}/status", "test-admin", "failure"),
    ]


async def test_the_callers_actor_ends_with_the_request_whatever_its_outcome(
    client: httpx.AsyncClient, make_client: Callable[..., httpx.AsyncClient]
) -> None:
    # the in-process transport runs the app in this task: an actor left set would show here
    patient_id = (await client.post("/api/patients", json=patient_body(ward="A"))).json()["id"]
    assert current_actor() == SYSTEM
    assert (await client.get(f"/api/patients/{patient_id}")).status_code == 200
    assert current_actor() == SYSTEM
    nurse = make_client("nurse", sub="nina", ward="B")
    assert (await nurse.get(f"/api/patients/{patient_id}")).status_code == 403
    assert current_actor() == SYSTEM
    refused = await client.put(f"/api/patients/{patient_id}/status", json={"status": "stable"})
    assert refused.status_code == 409
    assert current_actor() == SYSTEM
    assert (await client.get("/api/analytics/dashboard")).status_code == 200
    assert current_actor() == SYSTEM


async def test_a_status_change_is_recorded_once_in_its_own_transaction(
    client: httpx.AsyncClient,
) -> None:
    patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
    moved = await client.put(f"/api/patients/{patient_id}/status", json={"status": "waiting"})
    assert moved.status_code == 200
    records = await audit_items(client, patient_id=patient_id)
    assert [r["action"] for r in records] == ["patient.create", "patient.update"]
    assert "status waiting" in records[1]["detail"]


async def test_a_refused_write_leaves_no_success_record_and_no_patient(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    assert (await client.post("/api/patients", json=patient_body(mrn="M-1"))).status_code == 201
    taken = await client.post("/api/patients", json=patient_body(mrn="M-1"))
    assert taken.status_code == 409
    records = await audit_items(client)
    creates = [r for r in records if r["action"] == "patient.create"]
    failures = [r for r in records if r["outcome"] == "failure"]
    assert len(creates) == 1
    assert [r["action"] for r in failures] == ["POST /api/patients"]
    with raw(settings) as db:
        assert db.execute("select count(*) from patients").fetchone() == (1,)


async def test_when_the_audit_record_cannot_be_written_the_change_is_not_made(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await tamper(
        settings, "delete from audit_head"
    )  # the chain tip is gone: every append must fail
    response = await client.post("/api/patients", json=patient_body())
    assert response.status_code == 500
    with raw(settings) as db:
        assert db.execute("select count(*) from patients").fetchone() == (0,)
        assert db.execute("select count(*) from patient_events").fetchone() == (0,)
        assert db.execute("select count(*) from audit_records").fetchone() == (0,)


async def test_audit_search_filters_by_subject_and_since(
    client: httpx.AsyncClient, make_client: Callable[..., httpx.AsyncClient]
) -> None:
    clinician = make_client("clinician", sub="dr-c")
    await clinician.post("/api/patients", json=patient_body())
    await client.post("/api/patients", json=patient_body())
    mine = await audit_items(client, subject="dr-c")
    assert {r["subject"] for r in mine} == {"dr-c"}
    assert len(mine) == 1
    future = await audit_items(client, since="2999-01-01T00:00:00Z")
    assert future == []


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2026-01-01T00:00:00"},
        {"patient_id": "nope"},
        {"limit": 0},
        {"after": -1},
        {"after": 2**63},
    ],
)
async def test_bad_audit_queries_are_422(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    response = await client.get("/api/audit", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_concurrent_writers_extend_one_unbroken_chain(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    responses = await asyncio.gather(
        *(client.post("/api/patients", json=patient_body()) for _ in range(25))
    )
    assert {r.status_code for r in responses} == {201}
    result = await trail(app).verify()
    assert result.ok
    assert result.checked >= 25


# --- tampering ------------------------------------------------------------------------------


@pytest.fixture
async def chained(app: FastAPI, client: httpx.AsyncClient) -> SqlAuditTrail:
    """Six audit records: three registrations, each read once."""
    for _ in range(3):
        patient_id = (await client.post("/api/patients", json=patient_body())).json()["id"]
        await client.get(f"/api/patients/{patient_id}")
    result = await trail(app).verify()
    assert result.ok
    assert result.checked == 6
    return trail(app)


@pytest.mark.parametrize(
    ("statement", "first_bad"),
    [
        ("update audit_records set subject = 'someone-else' where seq = 3", 3),
        ("update audit_records set outcome = 'denied' where seq = 1", 1),
        ("delete from audit_records where seq = 4", 4),
        ("delete from audit_records where seq = 6", 6),
        ("delete from audit_records where seq = 1", 1),
    ],
)
async def test_verify_names_the_first_edited_or_deleted_record(
    chained: SqlAuditTrail, settings: Settings, statement: str, first_bad: int
) -> None:
    await tamper(settings, statement)
    result = await chained.verify()
    assert not result.ok
    assert result.first_bad_seq == first_bad


async def test_verify_detects_two_records_swapped(
    chained: SqlAuditTrail, settings: Settings
) -> None:
    await tamper(
        settings,
        "update audit_records set seq = -2 where seq = 2",
        "update audit_records set seq = 2 where seq = 3",
        "update audit_records set seq = 3 where seq = -2",
    )
    result = await chained.verify()
    assert not result.ok
    assert result.first_bad_seq == 2


async def test_verify_detects_a_rewritten_hash(chained: SqlAuditTrail, settings: Settings) -> None:
    await tamper(
        settings,
        "update audit_records set action = 'x', hash = ? where seq = 5",
        params=("0" * 64,),
    )
    result = await chained.verify()
    assert (result.ok, result.first_bad_seq) == (False, 5)


async def test_the_cli_verify_command_passes_then_fails_after_an_edit(
    chained: SqlAuditTrail, settings: Settings
) -> None:
    runner = CliRunner()
    data_dir = str(Path(settings.data_dir))
    intact = await asyncio.to_thread(
        runner.invoke, cli, ["audit", "verify", "--data-dir", data_dir]
    )
    assert intact.exit_code == 0, intact.output
    assert "intact: 6 records" in intact.output
    await tamper(settings, "update audit_records set client = '10.0.0.9' where seq = 2")
    broken = await asyncio.to_thread(
        runner.invoke, cli, ["audit", "verify", "--data-dir", data_dir]
    )
    assert broken.exit_code == 1
    assert "BROKEN at record 2" in broken.output


async def test_the_cli_verify_command_also_checks_the_analytics_chain(
    app: FastAPI, settings: Settings
) -> None:
    # the analytics service audits what it serves in the split topology in its own database
    analytics = SqlAuditTrail(app.state.platform.analytics_db, app.state.platform.clock)
    await analytics.prepare()
    for n in range(3):
        await analytics.record(AuditEntry("GET /api/alerts", "alert", f"a{n}"))
    runner = CliRunner()
    data_dir = str(Path(settings.data_dir))
    intact = await asyncio.to_thread(
        runner.invoke, cli, ["audit", "verify", "--data-dir", data_dir]
    )
    assert intact.exit_code == 0, intact.output
    assert "analytics audit chain intact: 3 records" in intact.output

    db = sqlite3.connect(settings.data_dir / "analytics.db", timeout=10, isolation_level=None)
    try:
        db.execute("update audit_records set resource_id = 'a9' where seq = 2")
    finally:
        db.close()
    broken = await asyncio.to_thread(
        runner.invoke, cli, ["audit", "verify", "--data-dir", data_dir]
    )
    assert broken.exit_code == 1
    assert "patients audit chain intact" in broken.output
    assert "analytics audit chain BROKEN at record 2" in broken.output


async def test_concurrent_registrations_with_one_taken_mrn_fail_only_that_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # registrations arriving together commit together (group commit); a taken MRN in the group
    # must refuse that registration alone, and leave no patient, event or audit record for it
    await client.post("/api/patients", json=patient_body(mrn="MRN-TAKEN"))
    bodies = [patient_body() for _ in range(10)]
    bodies.insert(5, patient_body(mrn="MRN-TAKEN"))
    responses = await asyncio.gather(*(client.post("/api/patients", json=b) for b in bodies))
    assert [r.status_code for r in responses].count(409) == 1
    assert responses[5].status_code == 409
    assert [r.status_code for r in responses].count(201) == 10
    listed = (await client.get("/api/patients", params={"limit": 100})).json()["items"]
    assert len(listed) == 11
    result = await trail(app).verify()
    assert result.ok
    creates = [r for r in await trail(app).search(limit=1000) if r.action == "patient.create"]
    assert len(creates) == 11
