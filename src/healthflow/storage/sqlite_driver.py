"""SQLAlchemy's aiosqlite driver with one trip to the SQLite thread per statement, not four.

aiosqlite runs a `sqlite3` connection on a thread of its own; every call crosses to that thread
and back (a queue put, a thread wake-up, a callback into the event loop). SQLAlchemy's cursor
adapter makes four such calls a statement: open a cursor, execute, fetch the rows, close. On the
development machine a crossing costs 50-70 µs of CPU: a `SELECT 1` through SQLAlchemy cost
~350 µs (~150 µs in one crossing), and crossings were a third of a worker batch of one reading
(eight statements and a commit, ~3.6 ms), the batch a hospital's monitors posting every few
seconds make.

`OneTripCursor` does the four steps in one function on aiosqlite's thread and keeps what SQLAlchemy
reads afterwards (rows, description, row count, last row id). Everything else is SQLAlchemy's
aiosqlite dialect and aiosqlite itself, unchanged: the same thread, the same connection, the same
transactions, commits and errors. No library does this: aiosqlite's public calls either cross per
cursor step or return rows without the description SQLAlchemy needs, so this reaches into
aiosqlite's `_execute` (the call every public method is built on) and `_conn`, as SQLAlchemy's own
aiosqlite dialect does for its isolation level. Server-side cursors (streamed results) keep
SQLAlchemy's own adapter.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, Sequence[Any], int, int | None]


def _run(connection: aiosqlite.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """On aiosqlite's thread: the statement whole, from opening a cursor to closing it."""
    cursor = connection._conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else ()
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A client-side cursor whose statement crosses to the SQLite thread once."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:
        # the base class opens a cursor on the thread here: a crossing of its own, not needed
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        return None  # the sqlite3 cursor was closed on the thread; the rows are kept here

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._one_trip(operation, parameters, many=False))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            return await_(self._one_trip(operation, seq_of_parameters, many=True))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _one_trip(self, operation: Any, parameters: Any, *, many: bool) -> None:
        async with self._adapt_connection._execute_mutex:
            outcome: _Outcome = await self._connection._execute(
                _run, self._connection, operation, parameters, many
            )
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)


class _Connection(AsyncAdapt_aiosqlite_connection):
    """A connection whose commit and rollback cross to the thread only inside a transaction.

    SQLAlchemy rolls a connection back each time it goes back to the pool, after a commit and
    after every read alike. Outside a transaction `sqlite3` does nothing for either call (it
    checks `sqlite3_get_autocommit` first), yet the call crossed to the thread and back to
    find that out: the same flag is read here (`in_transaction`), and only a transaction that
    is open crosses.
    """

    __slots__ = ()
    _cursor_cls = OneTripCursor

    def _in_transaction(self) -> bool:
        sqlite = self._connection._connection  # None once closed: let aiosqlite say so
        return sqlite is None or sqlite.in_transaction

    def rollback(self) -> None:
        if self._in_transaction():
            super().rollback()

    def commit(self) -> None:
        if self._in_transaction():
            super().commit()


class OneTripAiosqlite(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module for `create_async_engine(..., module=...)` on a SQLite URL."""

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        return _Connection(self, adapted._connection)


def one_trip_aiosqlite() -> OneTripAiosqlite:
    return OneTripAiosqlite(aiosqlite, sqlite3)
