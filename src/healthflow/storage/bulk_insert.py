"""Many rows into one table in one statement, for the hottest inserts; on SQLite without
SQLAlchemy's per-row parameter handling.

SQLAlchemy Core turns every row's dict into the driver's parameters through its generic
machinery (`construct_params`: a lookup and a call per key, a new dict per row, then the
multi-row VALUES rendering when RETURNING is asked for): on SQLite about 12 µs of the event
loop's time a row, over a third of what the vitals insert cost it (BENCHMARKS.md, session 13).
On SQLite a row here is a tuple in `columns` order; each value goes through the bind processor
of its column's type, the one Core would have called (so the stored text is the type's own
conversion, not a copy of it). `run` hands the driver's `executemany` a `?` statement in one
trip and tells the rows skipped as conflicts by the driver's count of changes; `run_returning`
writes pages of rows as multi-row VALUES with RETURNING, one trip a page, as Core does.
PostgreSQL keeps Core's statement, RETURNING the inserted rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite import aiosqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

# rows a multi-row VALUES statement carries on SQLite: Core's own page size; far below the
# 32,766 parameters a statement may have for any table here
PAGE_ROWS = 1000


class BulkInsert:
    """`INSERT INTO table (columns) ... [ON CONFLICT DO NOTHING] [RETURNING ...]` of many rows.

    `columns` defaults to every column of the table, in its order; leave out a column the
    database fills (an autoincremented key). `returning` names the columns `run_returning`
    answers with, per inserted row.
    """

    def __init__(
        self,
        table: Table,
        *,
        skip_conflicts: bool,
        columns: Sequence[str] | None = None,
        returning: Sequence[str] = (),
    ) -> None:
        self._table = table
        self.columns = tuple(columns) if columns is not None else tuple(table.columns.keys())
        on_sqlite = sqlite.insert(table).values({name: bindparam(name) for name in self.columns})
        on_postgres = postgresql.insert(table)
        if skip_conflicts:
            on_sqlite = on_sqlite.on_conflict_do_nothing()
            on_postgres = on_postgres.on_conflict_do_nothing()
        back = [table.c[name] for name in returning]
        # SQLAlchemy renders the SQLite text, `?` placeholders in `columns` order; a page of
        # rows repeats its VALUES row
        compiled = (on_sqlite.returning(*back) if back else on_sqlite).compile(
            dialect=aiosqlite.dialect()
        )
        if tuple(compiled.positiontup or ()) != self.columns:
            raise ValueError(f"{table.name}: the insert's parameters are not its columns in order")
        self._row = "(" + ", ".join("?" * len(self.columns)) + ")"
        self._head, self._tail = str(compiled).split(f" VALUES {self._row}")
        self._pages: dict[int, str] = {}  # rows in a page -> its statement
        # PostgreSQL's count of the inserted: the rows RETURNING gives back
        self._core = on_postgres.returning(*(back or table.primary_key.columns.values()[:1]))
        self._convert: list[tuple[int, Callable[[Any], Any]]] | None = None

    async def run(self, conn: AsyncConnection, rows: Sequence[Sequence[Any]]) -> int:
        """Insert `rows` (tuples in `columns` order) in one statement; how many were new. For
        an insert without `returning`."""
        if not rows:
            return 0
        if conn.dialect.name != "sqlite":
            return len(await self._run_core(conn, rows))
        sql = f"{self._head} VALUES {self._row}{self._tail}"
        result = await conn.exec_driver_sql(sql, self._converted(conn.dialect, rows))
        return result.rowcount

    async def run_returning(
        self, conn: AsyncConnection, rows: Sequence[Sequence[Any]]
    ) -> list[tuple[Any, ...]]:
        """Insert `rows` (tuples in `columns` order); the `returning` columns of each new one."""
        if not rows:
            return []
        if conn.dialect.name != "sqlite":
            return await self._run_core(conn, rows)
        converted = self._converted(conn.dialect, rows)
        inserted: list[tuple[Any, ...]] = []
        for start in range(0, len(converted), PAGE_ROWS):
            page = converted[start : start + PAGE_ROWS]
            sql = self._pages.get(len(page))
            if sql is None:
                values = ", ".join([self._row] * len(page))
                sql = self._pages[len(page)] = f"{self._head} VALUES {values}{self._tail}"
            flat = tuple(value for row in page for value in row)
            inserted += [tuple(row) for row in await conn.exec_driver_sql(sql, flat)]
        return inserted

    async def _run_core(
        self, conn: AsyncConnection, rows: Sequence[Sequence[Any]]
    ) -> list[tuple[Any, ...]]:
        by_name = [dict(zip(self.columns, row, strict=True)) for row in rows]
        return [tuple(row) for row in await conn.execute(self._core, by_name)]

    def _converted(self, dialect: Dialect, rows: Sequence[Sequence[Any]]) -> Sequence[Any]:
        """The rows as the driver takes them: each value through its column type's processor."""
        convert = self._convert
        if convert is None:
            convert = self._convert = self._processors(dialect)
        if not convert:
            return rows
        converted = []
        for row in rows:
            values = list(row)
            for index, process in convert:
                values[index] = process(values[index])
            converted.append(tuple(values))  # SQLAlchemy takes tuples, not lists
        return converted

    def _processors(self, dialect: Dialect) -> list[tuple[int, Callable[[Any], Any]]]:
        """The columns whose type converts a value before the driver gets it, and how."""
        found: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(self.columns):
            column = self._table.c[name]
            process = column.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                found.append((index, process))
        return found
