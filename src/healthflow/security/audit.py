"""The audit trail: append-only, hash-chained records of who read or changed what, and how it went.

Each record stores the SHA-256 of the previous record's hash plus its own content, and a one-row
head table holds the last sequence number and hash. Editing, deleting or reordering any record
(the last one included) breaks the chain at that record, which `verify` names. There is no update
or delete path in the code. Someone who can rewrite the whole table and the head together can
forge a consistent chain: ship `healthflow audit verify` output (the head hash) off the machine
to anchor it (see docs/security.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from healthflow.ids import uuid7
from healthflow.ports import Clock
from healthflow.storage.engine import Database, UtcDateTime
from healthflow.storage.group_commit import GroupCommit

GENESIS = "0" * 64
SUCCESS = "success"
DENIED = "denied"
FAILURE = "failure"

metadata = MetaData()

audit_records = Table(
    "audit_records",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("id", String(36), nullable=False, unique=True),
    Column("at", UtcDateTime, nullable=False),
    Column("subject", String(200), nullable=False),
    Column("role", String(50), nullable=False),
    Column("action", String(64), nullable=False),
    Column("resource_type", String(50), nullable=False),
    Column("resource_id", String(64)),
    Column("outcome", String(16), nullable=False),
    Column("client", String(64)),
    Column("request_id", String(128)),
    Column("detail", Text),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_resource", "resource_id", "seq"),
    Index("ix_audit_subject", "subject", "seq"),
)

# One row: the chain's tip. Appends lock it (FOR UPDATE on PostgreSQL; SQLite has one writer),
# so concurrent writers extend the chain one at a time instead of forking it.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)


@dataclass(frozen=True)
class Actor:
    """Who acts: the caller of a request, or HealthFlow itself for background work."""

    subject: str
    role: str
    client: str | None = None
    request_id: str | None = None


SYSTEM = Actor("healthflow", "service")
_actor: ContextVar[Actor] = ContextVar("healthflow_audit_actor", default=SYSTEM)


def current_actor() -> Actor:
    """The actor of the running request (set by the access guard), else the system."""
    return _actor.get()


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


@dataclass(frozen=True)
class AuditEntry:
    """What happened, before it is stamped with time, actor and chain position."""

    action: str
    resource_type: str
    resource_id: str | None
    outcome: str = SUCCESS
    detail: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    id: str
    at: datetime
    subject: str
    role: str
    action: str
    resource_type: str
    resource_id: str | None
    outcome: str
    client: str | None
    request_id: str | None
    detail: str | None
    prev_hash: str
    hash: str

    def content(self) -> dict[str, Any]:
        """Everything the hash covers (all but the hashes themselves)."""
        return {
            "seq": self.seq,
            "id": self.id,
            "at": self.at.isoformat(),
            "subject": self.subject,
            "role": self.role,
            "action": self.action,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "outcome": self.outcome,
            "client": self.client,
            "request_id": self.request_id,
            "detail": self.detail,
        }


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    body = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + b"\n" + body).hexdigest()


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None


def _record(row: Any) -> AuditRecord:
    return AuditRecord(**{c: getattr(row, c) for c in audit_records.c.keys()})  # noqa: SIM118


class SqlAuditTrail:
    """The audit trail in the patient database, so a change and its record commit together.

    Records of their own (`record`: reads, refusals, admin actions) that arrive while one is
    committing wait for it and then commit together (`storage/group_commit.py`): one
    transaction, one head read and write, one fsync for all of them, in arrival order.
    """

    def __init__(self, db: Database, clock: Clock, *, max_group_commit: int = 256) -> None:
        self._db = db
        self._clock = clock
        # built once, bound per call: compiled and cached by SQLAlchemy, not per record
        self._read_head = select(audit_head).where(audit_head.c.id == 1).with_for_update()
        self._insert_record = insert(audit_records)
        self._move_head = (
            update(audit_head)
            .where(audit_head.c.id == 1)
            .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
        )
        self._own_records = GroupCommit[tuple[AuditEntry, Actor], AuditRecord](
            "audit",
            write_batch=self._write_records,
            write_one=self._write_record,
            max_batch=max_group_commit,
        )

    async def prepare(self) -> None:
        """Create the chain's head row once; safe to call at every start, from any process."""
        try:
            async with self._db.writer.begin() as conn:
                exists = await conn.scalar(select(audit_head.c.id).where(audit_head.c.id == 1))
                if exists is None:
                    await conn.execute(insert(audit_head).values(id=1, seq=0, hash=GENESIS))
        except IntegrityError:
            pass  # another process created it first

    async def append(
        self, conn: AsyncConnection, entry: AuditEntry, actor: Actor | None = None
    ) -> AuditRecord:
        """Add a record inside the caller's transaction (commits or rolls back with the change)."""
        (record,) = await self.append_many(conn, [(entry, actor or current_actor())])
        return record

    async def append_many(
        self, conn: AsyncConnection, entries: Sequence[tuple[AuditEntry, Actor]]
    ) -> list[AuditRecord]:
        """Add records in order inside the caller's transaction: one head read, one head write."""
        head = (await conn.execute(self._read_head)).one()
        seq, prev_hash = head.seq, head.hash
        records: list[AuditRecord] = []
        for entry, actor in entries:
            at = self._clock.now()
            seq += 1
            unsealed = AuditRecord(
                seq=seq,
                id=str(uuid7(at)),
                at=at,
                subject=actor.subject,
                role=actor.role,
                action=entry.action,
                resource_type=entry.resource_type,
                resource_id=entry.resource_id,
                outcome=entry.outcome,
                client=actor.client,
                request_id=actor.request_id,
                detail=entry.detail,
                prev_hash=prev_hash,
                hash="",
            )
            prev_hash = chain_hash(prev_hash, unsealed.content())
            records.append(replace(unsealed, hash=prev_hash))
        await conn.execute(self._insert_record, [r.__dict__ for r in records])
        await conn.execute(self._move_head, {"new_seq": seq, "new_hash": prev_hash})
        return records

    async def record(self, entry: AuditEntry, actor: Actor | None = None) -> AuditRecord:
        """Add a record in a transaction of its own (reads, refusals, admin actions), shared
        with the records that arrive while one commits; returns once it is durable."""
        # the actor is read here: the group's transaction runs outside the caller's context
        return await self._own_records.submit((entry, actor or current_actor()))

    async def _write_records(
        self, entries: Sequence[tuple[AuditEntry, Actor]]
    ) -> list[AuditRecord]:
        async with self._db.writer.begin() as conn:
            return await self.append_many(conn, entries)

    async def _write_record(self, entry: tuple[AuditEntry, Actor]) -> AuditRecord:
        (record,) = await self._write_records([entry])
        return record

    async def search(
        self,
        *,
        resource_id: str | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[AuditRecord]:
        query = (
            select(audit_records)
            .where(audit_records.c.seq > after_seq)
            .order_by(audit_records.c.seq)
            .limit(limit)
        )
        if resource_id is not None:
            query = query.where(audit_records.c.resource_id == resource_id)
        if subject is not None:
            query = query.where(audit_records.c.subject == subject)
        if since is not None:
            query = query.where(audit_records.c.at >= since)
        async with self._db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_record(r) for r in rows]

    async def verify(self, *, batch_size: int = 1000) -> Verification:
        """Walk the chain in order; name the first record that was edited, removed or moved."""
        expected_prev, expected_seq, checked = GENESIS, 1, 0
        async with self._db.reader.connect() as conn:
            while True:
                rows = (
                    await conn.execute(
                        select(audit_records)
                        .where(audit_records.c.seq >= expected_seq)
                        .order_by(audit_records.c.seq)
                        .limit(batch_size)
                    )
                ).all()
                for row in rows:
                    record = _record(row)
                    problem = _check(record, expected_seq, expected_prev)
                    if problem:
                        bad_seq, reason = problem
                        return Verification(False, checked, expected_prev, bad_seq, reason)
                    expected_prev, expected_seq, checked = record.hash, record.seq + 1, checked + 1
                if len(rows) < batch_size:
                    break
            head = (await conn.execute(select(audit_head).where(audit_head.c.id == 1))).first()
        if head is not None and (head.seq != checked or head.hash != expected_prev):
            return Verification(
                False,
                checked,
                expected_prev,
                checked + 1,
                f"chain ends at record {checked} but the head says {head.seq}: records removed",
            )
        return Verification(True, checked, expected_prev)


def _check(record: AuditRecord, expected_seq: int, expected_prev: str) -> tuple[int, str] | None:
    """The first bad sequence number and why, or None when the record continues the chain."""
    if record.seq != expected_seq:
        return expected_seq, f"record {expected_seq} is missing (next found is {record.seq})"
    if record.prev_hash != expected_prev:
        return record.seq, f"record {record.seq} does not follow the one before (removed or moved)"
    if chain_hash(record.prev_hash, record.content()) != record.hash:
        return record.seq, f"record {record.seq} was edited: its content does not match its hash"
    return None
