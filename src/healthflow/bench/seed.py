"""Fill the analytics store with N realistic events fast, through its own tables and rollups.

Patients are made and moved with the real domain (`Patient.register`, `change_status`), their
events with the real event builders, the stored documents with the store's de-identification and
the rollups with the real projection (`project`); only the writing is bulk: executemany on
SQLite, COPY on PostgreSQL, instead of one transaction per event. The rollups are added to what
the store already holds, so the dashboard counts the run's own events and the seeded ones.
"""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite as sqlite_dialect

from healthflow.analytics import store
from healthflow.analytics.projections import PatientState, project
from healthflow.messaging.events import CloudEvent
from healthflow.patients import events as patient_events
from healthflow.patients.domain import NewPatient, Patient, Sex, Status

SPAN_DAYS = 90
CHUNK = 50_000
WARDS = [f"SEED-{i}" for i in range(40)]
# stays, as moves after registration; the first one a patient's index picks
STAYS: list[list[Status]] = [
    [Status.WAITING, Status.IN_TREATMENT, Status.ADMITTED, Status.DISCHARGED],
    [Status.WAITING, Status.IN_TREATMENT, Status.STABLE, Status.DISCHARGED],
    [Status.IN_TREATMENT, Status.CRITICAL, Status.STABLE, Status.DISCHARGED],
    [Status.WAITING, Status.IN_TREATMENT, Status.DISCHARGED],
    [Status.WAITING, Status.ADMITTED, Status.CRITICAL, Status.IN_TREATMENT, Status.DISCHARGED],
]


@dataclass
class Rollups:
    """The rollup rows to add, summed over every seeded event (the store's `_apply`, in bulk)."""

    totals: dict[str, int]
    status_counts: dict[str, int]
    daily_counts: dict[tuple[date, str, str], int]
    daily_waits: dict[date, list[float]]

    @classmethod
    def empty(cls) -> Rollups:
        return cls(defaultdict(int), defaultdict(int), defaultdict(int), {})


@dataclass(frozen=True)
class _Step:
    """One event of a template stay: its type, its time after registration, its data."""

    type: str
    after: timedelta
    data: dict[str, Any]


def template_stays(count: int, *, now: datetime, seed: int) -> list[list[_Step]]:
    """`count` stays made with the real domain and event builders, to be replayed at other times
    for other patients (making 10 million through the domain would take most of an hour)."""
    rng = random.Random(seed)
    made: list[list[_Step]] = []
    for i in range(count):
        at = now - timedelta(days=1)
        new = NewPatient(
            given_name="Seed",
            family_name="Patient",
            birth_date=date(rng.randint(1935, 2020), rng.randint(1, 12), 15),
            sex=rng.choice((Sex.FEMALE, Sex.MALE)),
            ward=WARDS[i % len(WARDS)],
            bed=f"B{i % 30}",
        )
        patient = Patient.register(new, patient_id=uuid.uuid4(), mrn=f"S{i}", at=at)
        events = [patient_events.created(patient)]
        for status in STAYS[i % len(STAYS)]:
            at += timedelta(minutes=rng.uniform(5, 240))
            patient, change = patient.change_status(status, reason="seeded", source="bench", at=at)
            events.append(patient_events.status_changed(patient, change))
        start = events[0].time
        made.append([_Step(e.type, e.time - start, e.data) for e in events])
    return made


def _uuid7(millis: int, rng: random.Random) -> str:
    """healthflow.ids.uuid7 as text, with the bench's own random bits (no syscall per id)."""
    value = (millis << 80) | rng.getrandbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def generate(total_events: int, *, now: datetime, seed: int = 7) -> Iterator[list[CloudEvent]]:
    """Chunks of events, `total_events` in all, spread evenly over the last SPAN_DAYS days.

    Each stay replays a template stay for a new patient id from a new registration time; a stay
    never spans two chunks, and events that would lie in the future are left out.
    """
    rng = random.Random(seed)
    templates = template_stays(1000, now=now, seed=seed)
    per_stay = sum(len(t) for t in templates) / len(templates)
    stays = int(total_events / per_stay) + 1
    first = now - timedelta(days=SPAN_DAYS)
    step = timedelta(days=SPAN_DAYS) / stays
    made = 0
    chunk: list[CloudEvent] = []
    i = 0
    while made < total_events:
        template = templates[i % len(templates)]
        registered = first + step * (i % stays)
        i += 1
        patient_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        registered_at = registered.isoformat()
        for s in template:
            at = registered + s.after
            if at >= now or made >= total_events:
                break
            data = s.data.copy()
            data["patient_id"] = patient_id
            data["registered_at"] = registered_at
            millis = int(at.timestamp() * 1000)
            chunk.append(
                CloudEvent(_uuid7(millis, rng), patient_events.SOURCE, s.type, at, patient_id, data)
            )
            made += 1
        if len(chunk) >= CHUNK or made >= total_events:
            yield chunk
            chunk = []


def project_chunk(chunk: list[CloudEvent], rollups: Rollups) -> dict[str, PatientState]:
    """Apply the real projection to a chunk of whole stays; the patient states they leave."""
    known: dict[str, PatientState] = {}
    changed: dict[str, PatientState] = {}
    for event in chunk:
        effect = project(event, known.get(event.subject))
        if effect.state is not None:
            known[event.subject] = changed[event.subject] = effect.state
        rollups.totals["events"] += 1
        if effect.new_patient:
            rollups.totals["patients"] += 1
        for status, n in effect.status_delta.items():
            rollups.status_counts[status] += n
        for key, n in effect.daily.items():
            rollups.daily_counts[key] += n
        if effect.wait is not None:
            day, minutes = effect.wait
            rollups.daily_waits.setdefault(day, [0.0, 0])[0] += minutes
            rollups.daily_waits[day][1] += 1
    return changed


EVENT_COLUMNS = ["id", "type", "subject", "time", "document", "processed_at"]
EVENTS_INSERT = (
    "INSERT INTO events (id, type, subject, time, document, processed_at) VALUES (?, ?, ?, ?, ?, ?)"
)
# the stored document: the store's own de-identification of the event
_document = store._deidentified


def _rollup_rows(rollups: Rollups) -> dict[Table, list[dict[str, Any]]]:
    return {
        store.totals: [{"name": k, "value": v} for k, v in rollups.totals.items()],
        store.status_counts: [{"status": k, "value": v} for k, v in rollups.status_counts.items()],
        store.daily_counts: [
            {"day": d, "metric": m, "key": k, "value": v}
            for (d, m, k), v in rollups.daily_counts.items()
        ],
        store.daily_waits: [
            {"day": d, "total_minutes": w[0], "count": int(w[1])}
            for d, w in rollups.daily_waits.items()
        ],
    }


@dataclass(frozen=True)
class Seeded:
    events: int
    patients: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "patients": self.patients,
            "seconds": round(self.seconds, 1),
            "events_per_s": round(self.events / self.seconds) if self.seconds else None,
        }


def seed_sqlite(path: Path, total_events: int, *, progress: Any = None) -> Seeded:
    """Seed the SQLite analytics store (the server may keep running: WAL, one more writer)."""
    dialect = sqlite_dialect.dialect()
    started = time.perf_counter()
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA cache_size=-512000")  # 512 MiB: 10M rows of random index keys
    db.execute("PRAGMA synchronous=NORMAL")
    inserts = {t: _sqlite_insert(t, dialect) for t in (store.events, store.patient_states)}
    # the store's own conversion of a timestamp for SQLite, applied once per row
    stamp = store.events.c.time.type.dialect_impl(dialect).bind_processor(dialect)
    assert stamp is not None
    done = stamp(datetime.now(UTC))
    rollups = Rollups.empty()
    made = 0
    now = datetime.now(UTC)
    try:
        for chunk in generate(total_events, now=now):
            changed = project_chunk(chunk, rollups)
            db.execute("BEGIN")
            db.executemany(
                EVENTS_INSERT,
                [(e.id, e.type, e.subject, stamp(e.time), _document(e), done) for e in chunk],
            )
            sql, convert = inserts[store.patient_states]
            db.executemany(
                sql.replace("INSERT", "INSERT OR REPLACE", 1),
                [convert(store.state_row(s)) for s in changed.values()],
            )
            db.execute("COMMIT")
            made += len(chunk)
            if progress:
                progress(made)
        db.execute("BEGIN")
        for table, rows in _rollup_rows(rollups).items():
            sql, convert = _sqlite_add(table, dialect)
            db.executemany(sql, [convert(r) for r in rows])
        db.execute("COMMIT")
    finally:
        db.close()
    return Seeded(made, rollups.totals["patients"], time.perf_counter() - started)


def _sqlite_insert(table: Table, dialect: Any) -> tuple[str, Any]:
    columns = [c.name for c in table.c]
    processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    marks = ", ".join("?" * len(columns))
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608

    def convert(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            p(row[c]) if p is not None else row[c] for c, p in zip(columns, processors, strict=True)
        )

    return sql, convert


def _sqlite_add(table: Table, dialect: Any) -> tuple[str, Any]:
    """INSERT ... ON CONFLICT DO UPDATE adding the amounts: the store's rollup statement."""
    sql, convert = _sqlite_insert(table, dialect)
    keys = [c.name for c in table.primary_key]
    amounts = [c.name for c in table.c if not c.primary_key]
    sets = ", ".join(f"{a} = {a} + excluded.{a}" for a in amounts)
    return f"{sql} ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}", convert


async def seed_postgres(dsn: str, total_events: int, *, progress: Any = None) -> Seeded:
    """Seed the PostgreSQL analytics store with COPY (events, patient states) and upserts."""
    import asyncpg  # type: ignore[import-untyped]

    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    rollups = Rollups.empty()
    made = 0
    now = datetime.now(UTC)
    state_columns = [c.name for c in store.patient_states.c]
    try:
        for chunk in generate(total_events, now=now):
            changed = project_chunk(chunk, rollups)
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "events",
                    records=[(e.id, e.type, e.subject, e.time, _document(e), now) for e in chunk],
                    columns=EVENT_COLUMNS,
                )
                await conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS seed_states "
                    "(LIKE patient_states INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
                await conn.copy_records_to_table(
                    "seed_states",
                    records=[tuple(store.state_row(s).values()) for s in changed.values()],
                    columns=state_columns,
                )
                updates = ", ".join(f"{c} = excluded.{c}" for c in state_columns[1:])
                await conn.execute(
                    f"INSERT INTO patient_states SELECT * FROM seed_states "  # noqa: S608
                    f"ON CONFLICT (patient_id) DO UPDATE SET {updates}"
                )
            made += len(chunk)
            if progress:
                progress(made)
        async with conn.transaction():
            for table, rows in _rollup_rows(rollups).items():
                if not rows:
                    continue
                columns = list(rows[0])
                keys = [c.name for c in table.primary_key]
                amounts = [c for c in columns if c not in keys]
                sets = ", ".join(f"{a} = {table.name}.{a} + excluded.{a}" for a in amounts)
                marks = ", ".join(f"${i + 1}" for i in range(len(columns)))
                await conn.executemany(
                    f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks}) "  # noqa: S608
                    f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}",
                    [tuple(r.values()) for r in rows],
                )
    finally:
        await conn.close()
    return Seeded(made, rollups.totals["patients"], time.perf_counter() - started)
