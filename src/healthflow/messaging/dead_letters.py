"""Dead letters kept in a database table, so the embedded bus loses none across restarts."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, func, insert, select

from healthflow.messaging.events import CloudEvent
from healthflow.ports import DeadLetter
from healthflow.storage.engine import Database, UtcDateTime

metadata = MetaData()

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("group_name", String(100), nullable=False, index=True),
    Column("event_id", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("failed_at", UtcDateTime, nullable=False),
)


class SqlDeadLetterStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, letter: DeadLetter) -> None:
        async with self._db.writer.begin() as conn:
            await conn.execute(
                insert(dead_letters).values(
                    group_name=letter.group,
                    event_id=letter.event.id,
                    payload=letter.event.to_json().decode(),
                    error=letter.error[:4000],
                    attempts=letter.attempts,
                    failed_at=letter.failed_at,
                )
            )

    async def list(self, *, group: str | None, limit: int) -> list[DeadLetter]:
        query = select(dead_letters).order_by(dead_letters.c.seq.desc()).limit(limit)
        if group is not None:
            query = query.where(dead_letters.c.group_name == group)
        async with self._db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            DeadLetter(
                r.group_name, CloudEvent.from_json(r.payload), r.error, r.attempts, r.failed_at
            )
            for r in rows
        ]

    async def count(self) -> int:
        async with self._db.reader.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(dead_letters)) or 0)
