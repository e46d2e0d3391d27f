"""The embedded SQLite driver: one trip to aiosqlite's thread a statement, SQLAlchemy unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from healthflow.storage.engine import Database, open_database

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(50), nullable=False, unique=True),
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = open_database(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    await database.create_schema(metadata)
    yield database
    await database.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the functions sent to aiosqlite's thread from now on."""
    sent: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(
        self: aiosqlite.Connection, fn: Callable[..., Any], *a: Any, **kw: Any
    ) -> Any:
        sent.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *a, **kw)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return sent


async def test_a_statement_crosses_to_the_sqlite_thread_once(
    db: Database, trips: list[str]
) -> None:
    async with db.writer.connect() as conn:
        trips.clear()
        assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        # SQLAlchemy's own adapter crosses four times: cursor, execute, fetchall, close
        assert trips == ["_run"]


async def test_commit_and_rollback_cross_only_inside_a_transaction(
    db: Database, trips: list[str]
) -> None:
    async with db.reader.connect(), db.writer.connect():
        trips.clear()  # the connections are open (opening one crosses several times)
    async with db.reader.connect() as conn:  # a read, and the connection back to the pool
        await conn.execute(select(items))
    assert trips == ["_run"]  # sqlite3 would have done nothing for the rollback
    trips.clear()
    async with db.writer.begin() as conn:
        await conn.execute(insert(items), [{"name": "kept"}])
    assert trips == ["_run", "commit"]  # and no rollback after it
    trips.clear()

    async def failing_change() -> None:
        async with db.writer.begin() as conn:
            await conn.execute(insert(items), [{"name": "undone"}])
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        await failing_change()
    assert trips == ["_run", "rollback"]
    async with db.reader.connect() as conn:
        assert (await conn.execute(select(items.c.name))).scalars().all() == ["kept"]


async def test_writes_reads_and_counts_are_what_sqlite_says(db: Database) -> None:
    async with db.writer.begin() as conn:
        result = await conn.execute(insert(items).values(name="a"))
        assert result.inserted_primary_key == (1,)  # the cursor's lastrowid
        returned = await conn.execute(insert(items).returning(items.c.id), [{"name": "b"}])
        assert returned.scalars().all() == [2]
        await conn.execute(insert(items), [{"name": "c"}, {"name": "d"}])  # executemany
        changed = await conn.execute(
            update(items).where(items.c.id > 2).values(name=items.c.name + "!")
        )
        assert changed.rowcount == 2
    async with db.reader.connect() as conn:
        rows = (await conn.execute(select(items).order_by(items.c.id))).all()
        assert [(r.id, r.name) for r in rows] == [(1, "a"), (2, "b"), (3, "c!"), (4, "d!")]
        assert list((await conn.execute(select(items.c.name).limit(0))).keys()) == ["name"]
        streamed = await conn.stream(select(items.c.name).order_by(items.c.id))  # server side
        assert [name async for (name,) in streamed] == ["a", "b", "c!", "d!"]


async def test_a_failed_statement_raises_sqlalchemys_error_and_its_transaction_rolls_back(
    db: Database,
) -> None:
    async def duplicate() -> None:
        async with db.writer.begin() as conn:
            await conn.execute(insert(items), [{"name": "x"}])
            await conn.execute(insert(items), [{"name": "x"}])  # unique

    async def nonsense() -> None:
        async with db.writer.connect() as conn:
            await conn.execute(text("SELECT nonsense FROM nowhere"))

    with pytest.raises(IntegrityError):
        await duplicate()
    with pytest.raises(OperationalError):
        await nonsense()
    async with db.writer.begin() as conn:  # the one pooled writer is still good
        await conn.execute(insert(items), [{"name": "y"}])
        assert (await conn.execute(select(items.c.name))).scalars().all() == ["y"]


@pytest.mark.parametrize(
    ("checkpoint_pages", "wal_pages_from", "wal_pages_to"),
    [
        (100, 0, 150),  # checkpointed, and the WAL written again from its start
        (2000, 1200, 2000),  # never reached: all is still in the WAL (SQLite's 1,000 was)
    ],
)
async def test_the_wal_is_copied_back_every_checkpoint_pages(
    tmp_path: Path, checkpoint_pages: int, wal_pages_from: int, wal_pages_to: int
) -> None:
    database = open_database(
        f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}", sqlite_checkpoint_pages=checkpoint_pages
    )
    await database.create_schema(metadata)
    try:
        for conn_engine in (database.writer, database.reader):
            async with conn_engine.connect() as conn:
                assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == (
                    checkpoint_pages
                )
        for n in range(180):  # ~8 pages a commit: ~1,450 WAL pages in all
            async with database.writer.begin() as conn:
                await conn.execute(
                    insert(items), [{"name": f"{n}-{k}-" + "x" * 40} for k in range(60)]
                )
        wal_pages = (tmp_path / "wal.db-wal").stat().st_size // 4096
        assert wal_pages_from <= wal_pages <= wal_pages_to
    finally:
        await database.dispose()
