"""Many rows into one table in one statement, for the hottest inserts; on SQLite without
SQLAlchemy's per-row parameter handling.

SQLAlchemy Core turns every row's dict into the driver's parameters through its generic
machinery (`construct_params`: a lookup and a call per key, a new dict per row, then the
multi-row VALUES rendering when RETURNING is asked for): on SQLite about 12 µs of the event
loop's time a row, over a third of what the vitals insert cost it (BENCHMARKS.md, session 13).
On SQLite a row here is a tuple in the table's column order; each value goes through the
bind processor of its column's type, the one Core would have called (so the stored text is
the type's own conversion, not a copy of it), and the driver's `executemany` runs a `?`
statement in one trip. Rows skipped as conflicts are told by the driver's count of changes.
PostgreSQL keeps Core's statement, RETURNING the inserted rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite import aiosqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection


class BulkInsert:
    """`INSERT INTO table ... [ON CONFLICT DO NOTHING]` of many rows; `run` answers how many
    were inserted (the rest were conflicts, when those are skipped)."""

    def __init__(self, table: Table, *, skip_conflicts: bool) -> None:
        self._table = table
        self.columns = tuple(column.name for column in table.columns)
        on_sqlite = sqlite.insert(table)
        on_postgres = postgresql.insert(table)
        if skip_conflicts:
            on_sqlite = on_sqlite.on_conflict_do_nothing()
            on_postgres = on_postgres.on_conflict_do_nothing()
        # SQLAlchemy renders the SQLite text: every column, `?` placeholders in column order
        compiled = on_sqlite.compile(dialect=aiosqlite.dialect())
        if tuple(compiled.positiontup or ()) != self.columns:
            raise ValueError(f"{table.name}: the insert's parameters are not its columns in order")
        self._sqlite = str(compiled)
        # PostgreSQL's count of the inserted: the rows RETURNING gives back
        self._core = on_postgres.returning(table.primary_key.columns.values()[0])
        self._convert: list[tuple[int, Callable[[Any], Any]]] | None = None

    async def run(self, conn: AsyncConnection, rows: Sequence[Sequence[Any]]) -> int:
        """Insert `rows` (tuples in `columns` order) in one statement; how many were new."""
        if not rows:
            return 0
        if conn.dialect.name != "sqlite":
            by_name = [dict(zip(self.columns, row, strict=True)) for row in rows]
            return len((await conn.execute(self._core, by_name)).all())
        convert = self._convert
        if convert is None:
            convert = self._convert = self._processors(conn.dialect)
        parameters: Sequence[Sequence[Any]] = rows
        if convert:
            converted = []
            for row in rows:
                values = list(row)
                for index, process in convert:
                    values[index] = process(values[index])
                converted.append(tuple(values))  # SQLAlchemy takes tuples, not lists
            parameters = converted
        result = await conn.exec_driver_sql(self._sqlite, parameters)
        return result.rowcount

    def _processors(self, dialect: Dialect) -> list[tuple[int, Callable[[Any], Any]]]:
        """The columns whose type converts a value before the driver gets it, and how."""
        found: list[tuple[int, Callable[[Any], Any]]] = []
        for index, column in enumerate(self._table.columns):
            process = column.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                found.append((index, process))
        return found
