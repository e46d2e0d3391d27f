"""Scratch databases for the store benchmarks: SQLite in a temporary folder, then, when a
PostgreSQL server URL is given, a database made on it for the run and dropped afterwards."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from healthflow.storage.engine import Database, open_database


async def scratch_databases(postgres: str | None) -> AsyncIterator[tuple[str, Database]]:
    """(label, database) for SQLite and, if `postgres` is set, PostgreSQL; each is disposed
    (and the PostgreSQL one dropped) once the caller moves on to the next."""
    with tempfile.TemporaryDirectory() as folder:
        db = open_database(f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}")
        try:
            yield "SQLite", db
        finally:
            await db.dispose()
    if not postgres:
        return
    name = f"hf_bench_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(postgres, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    db = open_database(postgres.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield "PostgreSQL", db
    finally:
        await db.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
