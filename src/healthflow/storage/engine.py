"""Async SQLAlchemy engines: one writer and one reader per database, tuned per backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, MetaData, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator

from healthflow.ports import Check
from healthflow.storage.sqlite_driver import one_trip_aiosqlite

_SQLITE_DATETIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on SQLite (text) as on PostgreSQL (timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused: pass timezone-aware UTC")
        return value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # SQLite stores the text SQLAlchemy's DATETIME writes, "YYYY-MM-DD HH:MM:SS.ffffff" in
        # UTC: written here in one step instead of converting, then formatting through a dict
        # of the parts (a reading binds four instants; this halves what each costs). The last
        # instant's text is kept: the rows of one request share their arrival instant, the
        # very same object, and get its text without formatting it again (one tuple, replaced
        # whole, so a thread never sees one instant with another's text)
        last: tuple[datetime | None, str | None] = (None, None)

        def to_text(value: datetime | None) -> str | None:
            nonlocal last
            if value is None:
                return None
            seen = last
            if seen[0] is value:
                return seen[1]
            original = value
            if value.tzinfo is not UTC:
                if value.tzinfo is None:
                    raise ValueError("naive datetimes are refused: pass timezone-aware UTC")
                value = value.astimezone(UTC)
            text = _SQLITE_DATETIME % (
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
            )
            last = (original, text)
            return text

        return to_text

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Database:
    """A writer engine and a reader engine (the same server, or a read replica)."""

    writer: AsyncEngine
    reader: AsyncEngine
    replica: bool = False

    @property
    def current(self) -> AsyncEngine:
        """Where a read must see every committed write: the reader unless it is a replica."""
        return self.writer if self.replica else self.reader

    @property
    def backend(self) -> str:
        return self.writer.dialect.name

    async def create_schema(self, metadata: MetaData) -> None:
        async with self.writer.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def check(self, timeout_s: float = 2.0) -> Check:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s), self.reader.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means not ready; the detail says which
            return Check(False, {"backend": self.backend, "error": type(exc).__name__})
        latency = round((time.perf_counter() - started) * 1000, 2)
        return Check(True, {"backend": self.backend, "latency_ms": latency})

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def open_database(
    url: str,
    *,
    read_url: str | None = None,
    sqlite_synchronous: str = "FULL",
    sqlite_checkpoint_pages: int = 16_384,
) -> Database:
    if make_url(url).get_backend_name() == "sqlite":
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # SQLite takes one writer at a time: one pooled writer connection serialises writes in
        # process instead of failing them with "database is locked"; WAL lets readers run beside it.
        driver = one_trip_aiosqlite()
        writer = create_async_engine(url, pool_size=1, max_overflow=0, module=driver)
        # eight readers, kept open: the same most-at-once as four plus four overflow, but an
        # overflow connection was closed on return and opened again (a thread, a connection,
        # five PRAGMAs) about once per eight reads when a ward's dashboards read together
        reader = create_async_engine(read_url or url, pool_size=8, max_overflow=0, module=driver)
        for engine in (writer, reader):
            _tune_sqlite(engine, sqlite_synchronous, sqlite_checkpoint_pages)
        return Database(writer, reader, replica=bool(read_url) and read_url != url)
    writer = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    reader = create_async_engine(read_url, pool_size=10, pool_pre_ping=True) if read_url else writer
    return Database(writer, reader, replica=reader is not writer)


def _tune_sqlite(engine: AsyncEngine, synchronous: str, checkpoint_pages: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # SQLite's default checkpoints every 1,000 WAL pages (4 MB), in the committing writer. A
        # reading lands on its device's and its patient's index pages, so a batch of monitors'
        # readings rewrites a page per reading and index: checkpoints came every few commits
        # and copied each page again. Fewer, larger ones copy a page once for many commits.
        cursor.execute(f"PRAGMA wal_autocheckpoint={checkpoint_pages}")
        cursor.close()
