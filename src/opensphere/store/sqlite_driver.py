"""SQLite for the async engine at one thread hop per statement.

aiosqlite runs every sqlite3 call on the connection's own thread, and SQLAlchemy's
adapter makes four such calls per statement (open a cursor, execute, fetch the rows,
close the cursor). Each hop costs about 0.1 ms, most of what a small statement costs.
Here a cursor lives on the event loop's side, and ``execute`` runs the statement,
fetches its rows and closes the sqlite3 cursor in one call on the connection's thread.
A commit or rollback with no transaction open (a read-only unit of work, a connection
going back to the pool) costs no hop at all. Connecting and closing stay aiosqlite's.

This module is the DBAPI module handed to SQLAlchemy's aiosqlite dialect (``dbapi()``).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
from aiosqlite import (
    DatabaseError,
    Error,
    IntegrityError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    sqlite_version,
    sqlite_version_info,
)

__all__ = [
    "Connection", "DatabaseError", "Error", "IntegrityError", "NotSupportedError",
    "OperationalError", "ProgrammingError", "connect", "dbapi", "sqlite_version",
    "sqlite_version_info",
]

Row = tuple[Any, ...]
_Outcome = tuple[list[Row], Any, int, int | None]


def _run(connection: Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    """On the connection's thread: the statement, its rows and its counters, in one go."""
    cursor = connection._conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return rows, cursor.description, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()
        connection.in_transaction = connection._conn.in_transaction


def _end(connection: Connection, commit: bool) -> None:
    """On the connection's thread: commit or roll back, noting whether that worked."""
    try:
        connection._conn.commit() if commit else connection._conn.rollback()
    finally:
        connection.in_transaction = connection._conn.in_transaction


class Cursor:
    """A statement's result, fetched whole when it ran (as SQLAlchemy's adapter does)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._rows: list[Row] = []
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        return await self._execute(sql, parameters, many=False)

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Cursor:
        return await self._execute(sql, list(parameters), many=True)

    async def _execute(self, sql: str, parameters: Any, *, many: bool) -> Cursor:
        outcome = await self._connection._execute(_run, self._connection, sql, parameters, many)
        self._rows, self.description, self.rowcount, self.lastrowid = outcome
        return self

    async def fetchone(self) -> Row | None:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        size = self.arraysize if size is None else size
        taken, self._rows = self._rows[:size], self._rows[size:]
        return taken

    async def fetchall(self) -> list[Row]:
        taken, self._rows = self._rows, []
        return taken

    async def close(self) -> None:
        self._rows = []


class Connection(aiosqlite.Connection):
    """aiosqlite's connection, with cursors that cost no hop of their own.

    ``in_transaction`` mirrors sqlite3's flag as of the last call on the connection's
    thread (sqlite3 objects may not be touched from the event loop's).
    """

    in_transaction = False

    def cursor(self) -> Cursor:  # type: ignore[override]
        return Cursor(self)

    async def commit(self) -> None:
        if self.in_transaction:
            await self._execute(_end, self, True)

    async def rollback(self) -> None:
        if self.in_transaction:
            await self._execute(_end, self, False)


def connect(database: str | Path, **kwargs: Any) -> Connection:
    """Like ``aiosqlite.connect``: the sqlite3 connection is opened on its own thread."""
    return Connection(lambda: sqlite3.connect(str(database), **kwargs), iter_chunk_size=64)


def dbapi() -> Any:
    """This module wrapped the way SQLAlchemy's aiosqlite dialect expects its DBAPI."""
    from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

    return AsyncAdapt_aiosqlite_dbapi(sys.modules[__name__], sqlite3)
