"""The database fixtures themselves: both backends are reachable and migratable."""

from __future__ import annotations

import psycopg
from pg import FreshDatabaseUrl
from sqlalchemy import create_engine, inspect, text

from opensphere.store import Database

TABLES = {"organizations", "subjects", "tokens", "communities", "projects", "operations"}


def test_select_one(database_url: str) -> None:
    engine = create_engine(Database(database_url).sync_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_postgres_url_shape(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://opensphere@127.0.0.1:")
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select current_setting('listen_addresses')").fetchone() == (
            "127.0.0.1",
        )


def test_fresh_databases_are_distinct_and_empty(fresh_database_url: FreshDatabaseUrl) -> None:
    for backend in ("sqlite", "postgresql"):
        first, second = fresh_database_url(backend), fresh_database_url(backend)
        assert first != second
        engine = create_engine(Database(first).sync_url)
        try:
            assert inspect(engine).get_table_names() == []
        finally:
            engine.dispose()


def test_migrate_creates_tables(database_url: str) -> None:
    db = Database(database_url)
    db.migrate()
    db.migrate()  # idempotent: the server migrates on every start
    engine = create_engine(db.sync_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables >= TABLES, f"missing tables: {sorted(TABLES - tables)}"
