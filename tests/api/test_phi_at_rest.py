"""PHI at rest: no plaintext identifiers in the database files; keys rotate online."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
from fastapi import FastAPI
from typer.testing import CliRunner

from healthflow.cli import app as cli
from healthflow.patients.store import SqlPatientStore
from healthflow.settings import Settings
from tests.conftest import eventually, patient_body

PLANTED = {
    "given_name": "Zebedee",
    "family_name": "Quartermaine",
    "birth_date": "1957-03-14",
    "mrn": "MRN-778899",
}


def data_files(settings: Settings) -> list[Path]:
    return [p for p in settings.data_dir.iterdir() if p.is_file()]


async def test_no_plaintext_phi_in_any_database_file(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    created = await client.post("/api/patients", json=patient_body(**PLANTED))
    assert created.status_code == 201
    patient_id = created.json()["id"]
    reason = "Zebedee's daughter reports a fall at home"
    moved = await client.put(
        f"/api/patients/{patient_id}/status", json={"status": "waiting", "reason": reason}
    )
    assert moved.status_code == 200

    async def analysed() -> bool:
        summary = (await client.get("/api/analytics/dashboard")).json()
        return bool(summary["events_processed_total"] == 2)

    await eventually(analysed)
    files = data_files(settings)
    assert any(p.name.startswith("patients.db") for p in files)
    assert any(p.name.startswith("analytics.db") for p in files)
    for path in files:
        content = path.read_bytes()
        for value in [*PLANTED.values(), reason]:
            assert value.encode() not in content, f"{value} in {path.name}"
    history = (await client.get(f"/api/patients/{patient_id}/events")).json()["items"]
    assert history[-1]["data"]["reason"] == reason
    # and the API still answers with the real values
    shown = (await client.get(f"/api/patients/{patient_id}")).json()
    assert {k: shown[k] for k in PLANTED} == PLANTED


async def test_a_raw_sql_read_shows_ciphertext_with_its_key_id(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await client.post("/api/patients", json=patient_body(**PLANTED))
    with sqlite3.connect(settings.data_dir / "patients.db") as db:
        given, mrn, key_id = db.execute("select given_name, mrn, key_id from patients").fetchone()
    assert given.startswith(f"{key_id}:")
    assert mrn.startswith(f"{key_id}:")
    assert "Zebedee" not in given


async def test_mrn_uniqueness_and_lookup_work_through_the_blind_index(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    first = await client.post("/api/patients", json=patient_body(mrn="MRN-1"))
    assert first.status_code == 201
    again = await client.post("/api/patients", json=patient_body(mrn="MRN-1"))
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/mrn-taken"
    store: SqlPatientStore = app.state.platform.patient_store
    found = await store.find_by_mrn("MRN-1")
    assert found is not None
    assert str(found.id) == first.json()["id"]
    assert await store.find_by_mrn("MRN-2") is None


async def test_key_rotation_online_keeps_every_patient_readable(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    ids = [
        (await client.post("/api/patients", json=patient_body(given_name=f"P{i}"))).json()["id"]
        for i in range(7)
    ]
    await client.put(f"/api/patients/{ids[0]}/status", json={"status": "waiting", "reason": "r0"})
    with sqlite3.connect(settings.data_dir / "patients.db") as db:
        [(old_key,)] = db.execute("select distinct key_id from patients").fetchall()

    runner = CliRunner()
    args = ["keys", "rotate", "--batch-size", "3", "--data-dir", str(settings.data_dir)]
    rotated = await asyncio.to_thread(runner.invoke, cli, args)
    assert rotated.exit_code == 0, rotated.output
    assert "15 rows re-encrypted" in rotated.output  # 7 patients, 8 events

    with sqlite3.connect(settings.data_dir / "patients.db") as db:
        keys = {k for (k,) in db.execute("select distinct key_id from patients")}
        event_keys = {k for (k,) in db.execute("select distinct key_id from patient_events")}
    assert len(keys) == 1
    assert keys != {old_key}
    assert event_keys == keys
    history = (await client.get(f"/api/patients/{ids[0]}/events")).json()["items"]
    assert history[-1]["data"]["reason"] == "r0"
    # the running server reads every row under the new key and writes new rows with it
    for i, patient_id in enumerate(ids):
        shown = await client.get(f"/api/patients/{patient_id}")
        assert shown.status_code == 200
        assert shown.json()["given_name"] == f"P{i}"
    late = await client.post("/api/patients", json=patient_body())
    assert late.status_code == 201
    with sqlite3.connect(settings.data_dir / "patients.db") as db:
        assert {k for (k,) in db.execute("select distinct key_id from patients")} == keys
    audit = (await client.get("/api/audit", params={"limit": 500})).json()["items"]
    assert any(r["action"] == "keys.rotate" for r in audit)
