"""The database handle: URL normalisation, migrations on start, async sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from opensphere.store import sqlite_driver

MIGRATIONS = Path(__file__).parent / "migrations"


def _urls(url: str) -> tuple[URL, URL]:
    """The (sync, async) driver URLs for a user-supplied database URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite"), parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        pg = parsed.set(drivername="postgresql+psycopg")
        return pg, pg
    raise ValueError(f"unsupported database backend {backend!r}: use sqlite or postgresql")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Database:
    """One per process. ``migrate()`` before first use; ``session()`` per unit of work."""

    def __init__(self, url: str) -> None:
        self.sync_url, self.async_url = _urls(url)
        self.is_sqlite = self.sync_url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.sync_url.database:
            Path(self.sync_url.database).parent.mkdir(parents=True, exist_ok=True)
        # Enough pooled connections for the concurrency one process serves without churn.
        kwargs: dict[str, Any] = {"pool_size": 20, "max_overflow": 20}
        if self.is_sqlite:
            writer = asyncio.Lock()  # one writer at a time, see sqlite_driver
            path = self.sync_url.database or ":memory:"
            kwargs["module"] = sqlite_driver.dbapi()
            kwargs["async_creator"] = lambda: sqlite_driver.connect(path, writer)
        self.engine = create_async_engine(self.async_url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest revision (safe to call on every start)."""
        engine = create_engine(self.sync_url)
        if self.is_sqlite:
            event.listen(engine, "connect", _sqlite_pragmas)
        try:
            with engine.begin() as conn:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        finally:
            engine.dispose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A transaction: committed on success, rolled back on any exception."""
        async with self._sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()
