"""Marking an outbox's rows published, shared by the patient events' and the telemetry outbox.

A relay confirms a batch of rows it read in sequence order, and nearly always their sequence
numbers run without a gap: the rows are marked by runs (`seq BETWEEN first AND last`, one
statement executed once per run) instead of one `seq IN (...)` over every number, which
SQLAlchemy expands into a parameter per row and SQLite turns into a temporary index
(BENCHMARKS.md, session 14).

Confirmations that arrive while a marking commits are marked together, in one transaction
(`MarkPublished`, a group commit): under load the relay confirms a batch about as often as the
intake commits one, and each marking otherwise queued for the one SQLite writer on its own,
ahead of the intake's next commit (BENCHMARKS.md, session 16).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, update

from healthflow.storage.engine import Database
from healthflow.storage.group_commit import GroupCommit


class MarkPublished:
    """An outbox's `mark_published` for a table with `seq` and `published_at`.

    What is confirmed while a marking commits waits for it, then all of it is marked in one
    transaction. A caller returns once its rows are marked, or raises what the marking raised
    (the relay then sends those rows again).
    """

    def __init__(self, db: Database, table: Table, *, name: str) -> None:
        self._db = db
        # built once, bound per run
        self._statement = (
            update(table)
            .where(table.c.seq.between(bindparam("first"), bindparam("last")))
            .values(published_at=bindparam("at"))
        )
        self._group = GroupCommit[tuple[Sequence[int], datetime], None](
            name, write_batch=self._write_batch, write_one=self._write_one
        )

    async def __call__(self, seqs: Sequence[int], at: datetime) -> None:
        if seqs:
            await self._group.submit((seqs, at))

    async def _write_batch(self, confirmed: Sequence[tuple[Sequence[int], datetime]]) -> list[None]:
        """Exactly the rows each `(seqs, at)` names, published `at`: one statement, run per run."""
        parameters: list[dict[str, Any]] = [
            {"first": first, "last": last, "at": at}
            for seqs, at in confirmed
            for first, last in runs(seqs)
        ]
        async with self._db.writer.begin() as conn:
            await conn.execute(self._statement, parameters)
        return [None] * len(confirmed)

    async def _write_one(self, confirmed: tuple[Sequence[int], datetime]) -> None:
        await self._write_batch([confirmed])


def runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """The sequence numbers as (first, last) runs of consecutive numbers, in the given order."""
    found: list[list[int]] = []
    for seq in seqs:
        if found and seq == found[-1][1] + 1:
            found[-1][1] = seq
        else:
            found.append([seq, seq])
    return [(first, last) for first, last in found]
