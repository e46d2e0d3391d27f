"""A data dir written before encryption (schema 0001, plaintext) is migrated and sealed at start."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime

import httpx
from alembic import command
from sqlalchemy import Connection

from healthflow.app import build_app
from healthflow.ids import uuid7
from healthflow.patients import events
from healthflow.patients.domain import NewPatient, Patient, Sex
from healthflow.settings import Settings
from healthflow.storage import migrations
from healthflow.storage.engine import open_database
from tests.conftest import auth_headers

AT = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)


def _stamp_0001(connection: Connection) -> None:
    command.upgrade(migrations._config(migrations.PATIENTS, connection), "0001")


def _sqlite_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


async def test_plaintext_rows_are_sealed_and_stay_readable(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    new = NewPatient("Hieronymus", "Plaintext", date(1944, 4, 4), Sex.MALE, "ICU", mrn="OLD-1")
    patient = Patient.register(new, patient_id=uuid7(AT), mrn="OLD-1", at=AT)
    created = events.created(patient)
    db = open_database(settings.database_url)
    async with db.writer.begin() as conn:
        await conn.run_sync(_stamp_0001)
    await db.dispose()
    # rows exactly as the code before encryption wrote them
    with sqlite3.connect(settings.data_dir / "patients.db") as raw:
        raw.execute(
            "INSERT INTO patients VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, 1, ?, ?, ?)",
            (
                patient.id.hex,
                "OLD-1",
                "Hieronymus",
                "Plaintext",
                "1944-04-04",
                "male",
                "ICU",
                "registered",
                _sqlite_time(AT),
                _sqlite_time(AT),
                _sqlite_time(AT),
            ),
        )
        raw.execute(
            "INSERT INTO patient_events (id, patient_id, type, payload, created_at, published_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                created.id,
                patient.id.hex,
                created.type,
                created.to_json().decode(),
                _sqlite_time(AT),
                _sqlite_time(AT),
            ),
        )

    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=auth_headers(app)
        ) as http:
            shown = (await http.get(f"/api/patients/{patient.id}")).json()
            history = (await http.get(f"/api/patients/{patient.id}/events")).json()["items"]
            taken = await http.post(
                "/api/patients",
                json={
                    "given_name": "A",
                    "family_name": "B",
                    "birth_date": "1990-01-01",
                    "sex": "female",
                    "ward": "ICU",
                    "mrn": "OLD-1",
                },
            )
        found = await app.state.platform.patient_store.find_by_mrn("OLD-1")

    assert (shown["given_name"], shown["birth_date"], shown["mrn"]) == (
        "Hieronymus",
        "1944-04-04",
        "OLD-1",
    )
    assert [e["id"] for e in history] == [created.id]
    assert taken.status_code == 409  # the blind index covers the old row too
    assert found is not None
    with sqlite3.connect(settings.data_dir / "patients.db") as raw:
        key_id, given, index = raw.execute(
            "SELECT key_id, given_name, mrn_index FROM patients"
        ).fetchone()
        event_key, payload = raw.execute("SELECT key_id, payload FROM patient_events").fetchone()
    assert key_id is not None
    assert given.startswith(f"{key_id}:")
    assert index is not None
    assert event_key == key_id
    assert "Hieronymus" not in payload
