"""Shared fixtures: databases on both supported backends, and end-of-run notes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg import BACKENDS, FreshDatabaseUrl, LazyPostgres, PostgresServer, PostgresUnavailable
from servers import RunningServer, ServerThread, settings_for

_NOTES = pytest.StashKey[dict[str, list[str]]]()


@pytest.fixture(scope="session")
def _lazy_postgres() -> Iterator[LazyPostgres]:
    lazy = LazyPostgres()
    try:
        yield lazy
    finally:
        lazy.close()


def _server(lazy: LazyPostgres) -> PostgresServer:
    # A missing PostgreSQL must fail the run, not skip: CI would otherwise pass
    # without ever exercising the PostgreSQL code paths.
    try:
        return lazy.server
    except PostgresUnavailable as exc:
        reason = str(exc)
    pytest.fail(f"PostgreSQL tests cannot run: {reason}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_server(_lazy_postgres: LazyPostgres) -> PostgresServer:
    """The session's throwaway PostgreSQL server (started on first request)."""
    return _server(_lazy_postgres)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """``postgresql://opensphere@127.0.0.1:PORT/DB``: one database shared by the session."""
    return postgres_server.create_database("opensphere")


@pytest.fixture(scope="session")
def fresh_database_url(
    _lazy_postgres: LazyPostgres, tmp_path_factory: pytest.TempPathFactory
) -> FreshDatabaseUrl:
    """``fresh_database_url(backend)`` -> URL of a new empty database.

    Session-scoped so module- and class-scoped fixtures can use it too. ``backend``
    is ``"sqlite"`` or ``"postgresql"``; PostgreSQL databases live on the shared
    session server and are dropped with it.
    """

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'opensphere.db'}"
        if backend == "postgresql":
            return _server(_lazy_postgres).create_database()
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")

    return make


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest,
    fresh_database_url: FreshDatabaseUrl,
    _lazy_postgres: LazyPostgres,
) -> Iterator[str]:
    """A fresh empty database per test, once on SQLite and once on PostgreSQL."""
    url = fresh_database_url(request.param)
    yield url
    if request.param == "postgresql":
        # Keeps the temporary cluster small over hundreds of tests.
        _lazy_postgres.server.drop_database(url)


@pytest.fixture(scope="session")
def terminal_notes(pytestconfig: pytest.Config) -> dict[str, list[str]]:
    """Section title -> lines, printed after the run even without ``-s``.

    For findings that should be seen but must not fail the run.
    """
    return pytestconfig.stash.setdefault(_NOTES, {})


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Print the sections collected through ``terminal_notes``."""
    for title, lines in config.stash.get(_NOTES, {}).items():
        if lines:
            terminalreporter.section(title, sep="-")
            for line in lines:
                terminalreporter.write_line(line)


@pytest.fixture(scope="module", params=BACKENDS)
def api_server(
    request: pytest.FixtureRequest,
    fresh_database_url: FreshDatabaseUrl,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """A real server on loopback ports, once per module and backend, with a fresh store."""
    data_dir = tmp_path_factory.mktemp(f"data-{request.param}")
    thread = ServerThread(settings_for(data_dir, fresh_database_url(request.param)))
    running = thread.start()
    try:
        yield running
    finally:
        thread.stop()
