"""SQLite for the async engine, run on the event loop's own thread.

A SQLite statement costs microseconds; handing it to a worker thread and back (as
aiosqlite does, several times per statement through SQLAlchemy's adapter) costs a
hundred times that. So statements run inline, which is safe on two conditions:

* Readers never wait: in WAL mode a read never blocks on a writer.
* Writers never wait inside SQLite: a write blocks while another connection holds the
  write lock, and that connection may belong to this very event loop, waiting for its
  turn to commit. So each store serialises its write transactions with an asyncio lock
  taken, without blocking the loop, before the statement that would begin one (the
  implicit ``BEGIN`` of sqlite3's legacy transaction handling) and released when the
  transaction ends. Only another process writing the same file can make a statement
  wait (up to ``busy_timeout``); the SQLite store is meant for one server process.

This module is the DBAPI module handed to SQLAlchemy's aiosqlite dialect (``dbapi()``);
``connect`` is its ``async_creator``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from sqlite3 import (
    DatabaseError,
    Error,
    IntegrityError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    sqlite_version,
    sqlite_version_info,
)
from typing import Any

__all__ = [
    "Connection", "DatabaseError", "Error", "IntegrityError", "NotSupportedError",
    "OperationalError", "ProgrammingError", "connect", "dbapi", "sqlite_version",
    "sqlite_version_info",
]

Row = tuple[Any, ...]
# Statements before which sqlite3 begins a write transaction (or that begin one).
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "SAVEPOINT", "BEGIN")
WRITE_WAIT = 10.0  # seconds a writer waits for the store's other writer, as busy_timeout


def _begins_write(sql: str) -> bool:
    return sql.lstrip()[:9].upper().startswith(_WRITES)


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
        await self._connection.before(sql)
        return self._take(self._connection.raw.execute(sql, parameters))

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Cursor:
        await self._connection.before(sql)
        return self._take(self._connection.raw.executemany(sql, parameters))

    def _take(self, cursor: sqlite3.Cursor) -> Cursor:
        try:
            self._rows = cursor.fetchall() if cursor.description else []
            self.description, self.rowcount = cursor.description, cursor.rowcount
            self.lastrowid = cursor.lastrowid
        finally:
            cursor.close()
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


class Connection:
    """A sqlite3 connection used from the event loop, with the store's writer lock."""

    def __init__(self, raw: sqlite3.Connection, writer: asyncio.Lock) -> None:
        self.raw = raw
        self._connection: sqlite3.Connection | None = raw  # what SQLAlchemy's adapter checks
        self._writer = writer
        self._writing = False

    @property
    def isolation_level(self) -> str | None:
        return self.raw.isolation_level

    def cursor(self) -> Cursor:
        return Cursor(self)

    async def before(self, sql: str) -> None:
        """Take the writer lock before a statement that would start a write transaction."""
        if not self._writing and not self.raw.in_transaction and _begins_write(sql):
            if self._writer.locked():  # wait_for costs a task: only when there is a wait
                try:
                    await asyncio.wait_for(self._writer.acquire(), WRITE_WAIT)
                except TimeoutError:
                    raise OperationalError("database is locked") from None
            else:
                await self._writer.acquire()
            self._writing = True

    async def commit(self) -> None:
        self._end(self.raw.commit)

    async def rollback(self) -> None:
        self._end(self.raw.rollback)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close at once (SQLAlchemy's terminate); an open transaction is rolled back."""
        if self._connection is not None:
            self._connection = None
            self.raw.close()
        if self._writing:
            self._writing = False
            self._writer.release()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self.raw.create_function(*args, **kwargs)

    def _end(self, end: Callable[[], None]) -> None:
        """Commit or roll back (when a transaction is open), then let the next writer in."""
        try:
            if self.raw.in_transaction:
                end()
        finally:
            self._release()

    def _release(self) -> None:
        if self._writing and not self.raw.in_transaction:
            self._writing = False
            self._writer.release()


async def connect(database: str, writer: asyncio.Lock) -> Connection:
    """Open ``database``; ``writer`` is the lock every connection to it shares."""
    return Connection(sqlite3.connect(database, check_same_thread=False), writer)


def dbapi() -> Any:
    """This module wrapped the way SQLAlchemy's aiosqlite dialect expects its DBAPI."""
    from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

    return AsyncAdapt_aiosqlite_dbapi(sys.modules[__name__], sqlite3)
