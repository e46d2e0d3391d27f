"""Marking an outbox's rows published, shared by the patient events' and the telemetry outbox.

A relay confirms a batch of rows it read in sequence order, and nearly always their sequence
numbers run without a gap: the rows are marked by runs (`seq BETWEEN first AND last`, one
statement executed once per run) instead of one `seq IN (...)` over every number, which
SQLAlchemy expands into a parameter per row and SQLite turns into a temporary index
(BENCHMARKS.md, session 14).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Table, bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection


class PublishedMarks:
    """Marks rows of an outbox table (`seq`, `published_at`) published, by runs."""

    def __init__(self, table: Table) -> None:
        # built once, bound per run
        self._statement = (
            update(table)
            .where(table.c.seq.between(bindparam("first"), bindparam("last")))
            .values(published_at=bindparam("at"))
        )

    async def mark(self, conn: AsyncConnection, seqs: Sequence[int], at: datetime) -> None:
        """Mark exactly the rows `seqs` names as published `at`."""
        await conn.execute(
            self._statement,
            [{"first": first, "last": last, "at": at} for first, last in runs(seqs)],
        )


def runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """The sequence numbers as (first, last) runs of consecutive numbers, in the given order."""
    found: list[list[int]] = []
    for seq in seqs:
        if found and seq == found[-1][1] + 1:
            found[-1][1] = seq
        else:
            found.append([seq, seq])
    return [(first, last) for first, last in found]
