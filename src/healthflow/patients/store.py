"""SQLAlchemy patient store: patients, their event history, and the outbox, in one database."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from healthflow.messaging.events import CloudEvent
from healthflow.messaging.outbox import CommittedCopy
from healthflow.patients.domain import MrnTaken, Patient, PatientChanged, Sex, Status
from healthflow.ports import Check, OutboxEntry, OutboxStats
from healthflow.security.audit import Actor, AuditEntry, SqlAuditTrail, current_actor
from healthflow.security.crypto import FieldCipher
from healthflow.storage import outbox_rows
from healthflow.storage.engine import Database, UtcDateTime
from healthflow.storage.group_commit import GroupCommit

metadata = MetaData()

# PHI columns (mrn, names, birth date) hold AES-GCM ciphertext (security/crypto.py); `key_id`
# names the key the row is sealed with, so rotation finds what to re-encrypt. MRN uniqueness and
# look-up go through `mrn_index`, a keyed HMAC of the MRN.
PHI_COLUMNS = ("mrn", "given_name", "family_name", "birth_date")

patients = Table(
    "patients",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("mrn", Text, nullable=False),
    Column("mrn_index", String(64)),  # NULL only on rows from before encryption, until sealed
    Column("given_name", Text, nullable=False),
    Column("family_name", Text, nullable=False),
    Column("birth_date", Text, nullable=False),
    Column("key_id", String(16)),
    Column("sex", String(16), nullable=False),
    Column("ward", String(50), nullable=False),
    Column("bed", String(20)),
    Column("status", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("status_since", UtcDateTime, nullable=False),
    Index("ix_patients_status_id", "status", "id"),
    Index("ix_patients_ward_id", "ward", "id"),
    Index("ix_patients_key_id", "key_id"),
    UniqueConstraint("mrn_index", name="uq_patients_mrn_index"),
)

# The patient's event history doubles as the transactional outbox: a row is written in the same
# transaction as the state it describes, and `published_at` stays NULL until the bus confirms it.
patient_events = Table(
    "patient_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("patient_id", Uuid, nullable=False),
    Column("type", String(64), nullable=False),
    Column("payload", Text, nullable=False),  # the CloudEvent JSON, AES-GCM sealed (reasons)
    Column("key_id", String(16)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("published_at", UtcDateTime),
    Index("ix_patient_events_patient", "patient_id", "seq"),
    Index("ix_patient_events_key_id", "key_id"),
    Index(
        "ix_patient_events_unpublished",
        "seq",
        sqlite_where=Column("published_at").is_(None),
        postgresql_where=Column("published_at").is_(None),
    ),
)


_INSERT_EVENT = insert(patient_events).returning(patient_events.c.seq, patient_events.c.id)
# per request (every audited read of a patient, the access guard's ward check): built once
_PATIENT_BY_ID = select(patients).where(patients.c.id == bindparam("id"))
_WARD_BY_ID = select(patients.c.ward).where(patients.c.id == bindparam("id"))


def _context(column: str, patient_id: UUID) -> str:
    return f"patients.{column}:{patient_id}"


def _row(patient: Patient, cipher: FieldCipher) -> dict[str, Any]:
    plain = {
        "mrn": patient.mrn,
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "birth_date": patient.birth_date.isoformat(),
    }
    sealed = {c: cipher.encrypt(v, context=_context(c, patient.id)) for c, v in plain.items()}
    return {
        "id": patient.id,
        **sealed,
        "mrn_index": mrn_index(cipher, patient.mrn),
        "key_id": cipher.key_id(sealed["mrn"]),
        "sex": patient.sex.value,
        "ward": patient.ward,
        "bed": patient.bed,
        "status": patient.status.value,
        "version": patient.version,
        "created_at": patient.created_at,
        "updated_at": patient.updated_at,
        "status_since": patient.status_since,
    }


def mrn_index(cipher: FieldCipher, mrn: str) -> str:
    return cipher.blind_index(mrn, purpose="patients.mrn")


def _open(row: Any, cipher: FieldCipher) -> dict[str, str]:
    if row.key_id is None:  # a row from before encryption (schema 0001): sealed at next start
        return {c: str(getattr(row, c)) for c in PHI_COLUMNS}
    return {c: cipher.decrypt(getattr(row, c), context=_context(c, row.id)) for c in PHI_COLUMNS}


def _patient(row: Any, cipher: FieldCipher) -> Patient:
    phi = _open(row, cipher)
    return Patient(
        id=row.id,
        mrn=phi["mrn"],
        given_name=phi["given_name"],
        family_name=phi["family_name"],
        birth_date=date.fromisoformat(phi["birth_date"]),
        sex=Sex(row.sex),
        ward=row.ward,
        bed=row.bed,
        status=Status(row.status),
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        status_since=row.status_since,
    )


def _event_context(event_id: str) -> str:
    return f"patient_events.payload:{event_id}"


def _seal_event(cipher: FieldCipher, event: CloudEvent) -> str:
    # events carry no names, but a free-text reason may say anything: sealed like PHI
    return cipher.encrypt(event.to_json().decode(), context=_event_context(event.id))


def _open_event(
    cipher: FieldCipher, event_id: str, payload: str, key_id: str | None = ""
) -> CloudEvent:
    if key_id is None:  # written before encryption (schema 0001): sealed at next start
        return CloudEvent.from_json(payload)
    return CloudEvent.from_json(cipher.decrypt(payload, context=_event_context(event_id)))


async def _append_events(
    conn: AsyncConnection, events: Sequence[CloudEvent], cipher: FieldCipher
) -> list[OutboxEntry]:
    """Write the events to the outbox; their entries, in sequence order, for the relay."""
    if not events:
        return []
    rows = []
    for e in events:
        sealed = _seal_event(cipher, e)
        rows.append(
            {
                "id": e.id,
                "patient_id": UUID(e.subject),
                "type": e.type,
                "payload": sealed,
                "key_id": cipher.key_id(sealed),
                "created_at": e.time,
            }
        )
    seqs = {row.id: row.seq for row in await conn.execute(_INSERT_EVENT, rows)}
    return sorted((OutboxEntry(seqs[e.id], e, e.time) for e in events), key=lambda x: x.seq)


@dataclass(frozen=True)
class _Registration:
    patient: Patient
    events: tuple[CloudEvent, ...]
    actor: Actor

    def audit_entry(self) -> AuditEntry:
        return AuditEntry("patient.create", "patient", str(self.patient.id))


class SqlPatientStore:
    """PatientStore over SQLAlchemy Core: SQLite by default, PostgreSQL by URL.

    Every write commits the patient row, its outbox events and its audit record together.
    """

    def __init__(
        self,
        db: Database,
        *,
        cipher: FieldCipher,
        audit: SqlAuditTrail,
        on_commit: Callable[[Sequence[OutboxEntry]], None] = lambda entries: None,
        max_group_commit: int = 256,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._audit = audit
        # the outbox relay's `committed`: it keeps the new entries and wakes, so they go out
        # without a poll and without being read back
        self._on_commit = on_commit
        self._insert_patient = insert(patients)
        # registrations arriving together commit together: one transaction, one fsync
        self._registrations = GroupCommit[_Registration, None](
            "patients.registrations",
            write_batch=self._add_many,
            write_one=self._add_one,
            max_batch=max_group_commit,
        )

    async def add(self, patient: Patient, events: Sequence[CloudEvent]) -> None:
        # the actor is read here, in the caller's request: the commit runs in another task
        await self._registrations.submit(_Registration(patient, tuple(events), current_actor()))

    async def _add_many(self, batch: Sequence[_Registration]) -> list[None]:
        async with self._db.writer.begin() as conn:
            await conn.execute(self._insert_patient, [_row(r.patient, self._cipher) for r in batch])
            events = [e for r in batch for e in r.events]
            entries = await _append_events(conn, events, self._cipher)
            await self._audit.append_many(conn, [(r.audit_entry(), r.actor) for r in batch])
        self._on_commit(entries)
        return [None] * len(batch)

    async def _add_one(self, registration: _Registration) -> None:
        try:
            await self._add_many([registration])
        except IntegrityError as exc:
            if "mrn" in str(exc.orig).lower():
                raise MrnTaken(registration.patient.mrn) from exc
            raise

    async def save(
        self, patient: Patient, *, expected_version: int, events: Sequence[CloudEvent]
    ) -> None:
        async with self._db.writer.begin() as conn:
            result = await conn.execute(
                update(patients)
                .where(patients.c.id == patient.id, patients.c.version == expected_version)
                .values(_row(patient, self._cipher))
            )
            if result.rowcount != 1:
                actual = await conn.scalar(
                    select(patients.c.version).where(patients.c.id == patient.id)
                )
                raise PatientChanged(patient.id, expected_version, actual or 0)
            entries = await _append_events(conn, events, self._cipher)
            detail = f"version {expected_version}->{patient.version}, status {patient.status}"
            await self._audit.append(
                conn, AuditEntry("patient.update", "patient", str(patient.id), detail=detail)
            )
        self._on_commit(entries)

    async def get(self, patient_id: UUID) -> Patient | None:
        # one patient is read where the last change committed, never from a lagging replica:
        # a read after a status change sees it, and a change starts from the current version
        async with self._db.current.connect() as conn:
            row = (await conn.execute(_PATIENT_BY_ID, {"id": patient_id})).first()
        return _patient(row, self._cipher) if row else None

    async def find_by_mrn(self, mrn: str) -> Patient | None:
        """Look a patient up by MRN through the blind index (the MRN itself is encrypted)."""
        query = select(patients).where(patients.c.mrn_index == mrn_index(self._cipher, mrn))
        async with self._db.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return _patient(row, self._cipher) if row else None

    async def ward_of(self, patient_id: UUID) -> str | None:
        """The patient's ward (not PHI, not encrypted): what a ward-limited role is checked on."""
        async with self._db.reader.connect() as conn:
            ward = await conn.scalar(_WARD_BY_ID, {"id": patient_id})
        return str(ward) if ward is not None else None

    async def reencrypt(self, *, limit: int) -> int:
        """Re-seal up to `limit` rows (patients, then events) not under the active key.

        Runs beside live traffic: each row is rewritten only if its key id is still the one read,
        and only its sealed columns change, so a concurrent status update is never overwritten.
        Returns how many rows changed; 0 means everything is under the active key.
        """
        return await self._reencrypt_patients(limit) or await self._reencrypt_events(limit)

    async def reencrypt_all(self, *, batch_size: int = 200) -> int:
        """Re-seal every row not under the active key (and seal rows from before encryption)."""
        total = 0
        while changed := await self.reencrypt(limit=batch_size):
            total += changed
        return total

    async def _reencrypt_events(self, limit: int) -> int:
        active = self._cipher.active_key_id
        stale = or_(patient_events.c.key_id.is_(None), patient_events.c.key_id != active)
        query = (
            select(
                patient_events.c.seq,
                patient_events.c.id,
                patient_events.c.payload,
                patient_events.c.key_id,
            )
            .where(stale)
            .limit(limit)
        )
        changed = 0
        async with self._db.writer.begin() as conn:
            for row in (await conn.execute(query)).all():
                event = _open_event(self._cipher, row.id, row.payload, row.key_id)
                sealed = _seal_event(self._cipher, event)
                result = await conn.execute(
                    update(patient_events)
                    .where(patient_events.c.seq == row.seq, patient_events.c.payload == row.payload)
                    .values(payload=sealed, key_id=self._cipher.key_id(sealed))
                )
                changed += result.rowcount
        return changed

    async def _reencrypt_patients(self, limit: int) -> int:
        active = self._cipher.active_key_id
        stale = or_(patients.c.key_id.is_(None), patients.c.key_id != active)
        query = select(patients).where(stale).limit(limit)
        changed = 0
        async with self._db.writer.begin() as conn:
            for row in (await conn.execute(query)).all():
                phi = _open(row, self._cipher)
                sealed = {
                    c: self._cipher.encrypt(v, context=_context(c, row.id)) for c, v in phi.items()
                }
                same_key = (
                    patients.c.key_id.is_(None)
                    if row.key_id is None
                    else patients.c.key_id == row.key_id
                )
                result = await conn.execute(
                    update(patients)
                    .where(patients.c.id == row.id, same_key)
                    .values(
                        **sealed,
                        key_id=self._cipher.key_id(sealed["mrn"]),
                        mrn_index=mrn_index(self._cipher, phi["mrn"]),
                    )
                )
                changed += result.rowcount
        return changed

    async def page(
        self, *, status: Status | None, ward: str | None, after: UUID | None, limit: int
    ) -> list[Patient]:
        query = select(patients).order_by(patients.c.id).limit(limit)
        if status is not None:
            query = query.where(patients.c.status == status.value)
        if ward is not None:
            query = query.where(patients.c.ward == ward)
        if after is not None:
            query = query.where(patients.c.id > after)
        async with self._db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_patient(r, self._cipher) for r in rows]

    async def history(self, patient_id: UUID) -> list[CloudEvent]:
        query = (
            select(patient_events.c.id, patient_events.c.payload, patient_events.c.key_id)
            .where(patient_events.c.patient_id == patient_id)
            .order_by(patient_events.c.seq)
        )
        async with self._db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_open_event(self._cipher, r.id, r.payload, r.key_id) for r in rows]

    async def count(self) -> int:
        async with self._db.reader.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(patients)) or 0)

    async def check(self) -> Check:
        return await self._db.check()


class SqlOutbox:
    """The Outbox port over the patient_events table; what the store committed is handed to
    the relay from a copy while it continues the cursor (`messaging.outbox.CommittedCopy`),
    instead of being read back and decrypted."""

    def __init__(self, db: Database, *, cipher: FieldCipher) -> None:
        self._db = db
        self._cipher = cipher
        self._copy = CommittedCopy()
        self._mark_published = outbox_rows.MarkPublished(
            db, patient_events, name="patients.outbox.marks"
        )

    def remember(self, entries: Sequence[OutboxEntry]) -> None:
        self._copy.remember(entries)

    async def pending(self, *, after_seq: int, limit: int) -> list[OutboxEntry]:
        if entries := self._copy.take(after_seq=after_seq, limit=limit):
            return entries
        query = (
            select(
                patient_events.c.seq,
                patient_events.c.id,
                patient_events.c.payload,
                patient_events.c.key_id,
                patient_events.c.created_at,
            )
            .where(patient_events.c.published_at.is_(None), patient_events.c.seq > after_seq)
            .order_by(patient_events.c.seq)
            .limit(limit)
        )
        async with self._db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            OutboxEntry(r.seq, _open_event(self._cipher, r.id, r.payload, r.key_id), r.created_at)
            for r in rows
        ]

    async def mark_published(self, seqs: Sequence[int], at: datetime) -> None:
        await self._mark_published(seqs, at)

    async def stats(self) -> OutboxStats:
        query = select(func.count(), func.min(patient_events.c.created_at)).where(
            patient_events.c.published_at.is_(None)
        )
        async with self._db.reader.connect() as conn:
            row = (await conn.execute(query)).one()
        return OutboxStats(int(row[0]), row[1])
