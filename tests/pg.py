"""A throwaway PostgreSQL server for the test suite.

Every storage test runs against SQLite and PostgreSQL, because the two differ in
exactly the places that bite (locking, types, constraint names, transactional DDL).
One server is started per test session from the local PostgreSQL binaries and each
test gets its own empty database on it, which costs milliseconds instead of the
seconds an ``initdb`` takes.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

BACKENDS = ["sqlite", "postgresql"]
# The type of the ``fresh_database_url`` fixture: backend name -> URL of a new database.
FreshDatabaseUrl = Callable[[str], str]

PG_BIN_ENV = "OPENSPHERE_PG_BIN"
SUPERUSER = "opensphere"
MAINTENANCE_DB = "postgres"
# Durability is pointless for a server that is deleted after the run.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "300",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries were found; the message says how to get them."""


def find_pg_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``.

    ``$OPENSPHERE_PG_BIN`` wins (``scripts/test.sh`` sets it); otherwise the newest
    Debian layout ``/usr/lib/postgresql/*/bin``, then ``pg_ctl`` on ``PATH``.
    """
    explicit = os.environ.get(PG_BIN_ENV)
    if explicit:
        path = Path(explicit)
        if not (path / "initdb").is_file() or not (path / "pg_ctl").is_file():
            raise PostgresUnavailable(f"${PG_BIN_ENV}={explicit} has no initdb/pg_ctl")
        return path
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in re.split(r"\D+", p.parent.name)],
        reverse=True,
    )
    for candidate in debian:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    on_path = shutil.which("pg_ctl")
    if on_path:
        # Debian links into /usr/lib/postgresql/N/bin; pg_ctl finds `postgres` beside itself.
        resolved = Path(on_path).resolve().parent
        if (resolved / "initdb").is_file():
            return resolved
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in "
        f"${PG_BIN_ENV}, /usr/lib/postgresql/*/bin or PATH. Run the suite via "
        "scripts/test.sh (it installs the Debian package `postgresql`), or install "
        f"PostgreSQL and set {PG_BIN_ENV} to its bin directory."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class _RunAs:
    """The account the server runs under: PostgreSQL refuses to run as root."""

    uid: int
    gid: int
    name: str

    @classmethod
    def pick(cls) -> _RunAs | None:
        """None when we are not root; otherwise ``postgres`` (Debian) or ``nobody``."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return cls(entry.pw_uid, entry.pw_gid, name)
        raise PostgresUnavailable("running as root and neither `postgres` nor `nobody` exists")


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 only."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or find_pg_bin()
        self.run_as = _RunAs.pick()
        self.root: Path | None = None
        self.port = 0

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "server not started"
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None, "server not started"
        return self.root / "sock"

    def url(self, dbname: str = MAINTENANCE_DB) -> str:
        """A ``postgresql://`` URL for ``dbname``, as OpenSphere's settings accept it."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self.run_as is not None:
            kwargs = {"user": self.run_as.uid, "group": self.run_as.gid, "extra_groups": []}
        proc = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            cwd=self.root,  # the server account may not be able to enter our cwd
            env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
            capture_output=True,
            text=True,
            check=False,
            **kwargs,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
                f"\n{self._log_tail()}"
            )
        return proc

    def _log_tail(self) -> str:
        log = self.root / "server.log" if self.root else None
        if log is None or not log.exists():
            return ""
        return "server.log:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])

    def start(self) -> None:
        """initdb, configure, and start; retried on a port lost to another process."""
        self.root = Path(tempfile.mkdtemp(prefix="opensphere-pg-"))
        try:
            self._init_and_start()
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise

    def _init_and_start(self) -> None:
        self.socket_dir.mkdir()
        if self.run_as is not None:
            for path in (self.root, self.socket_dir):
                os.chown(path, self.run_as.uid, self.run_as.gid)
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )
        settings = {**SERVER_SETTINGS, "unix_socket_directories": f"'{self.socket_dir}'"}
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# opensphere test server\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        last: Exception | None = None
        for _attempt in range(5):
            self.port = _free_port()
            try:
                self._run(
                    "pg_ctl", "-D", str(self.data_dir), "-l", str(self.root / "server.log"),
                    "-o", f"-p {self.port}", "-w", "-t", "60", "start",
                )
                return
            except RuntimeError as exc:
                last = exc
        raise RuntimeError(f"PostgreSQL did not start: {last}")

    def stop(self) -> None:
        """Kill the server (no clean shutdown needed) and delete everything it wrote."""
        if self.root is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _admin(self) -> psycopg.Connection:
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        return psycopg.connect(self.url(), autocommit=True)

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        name = f"{prefix}_{secrets.token_hex(6)}"
        # FILE_COPY beats the default WAL_LOG for a tiny template (no durability wanted).
        query = sql.SQL("CREATE DATABASE {} STRATEGY = FILE_COPY")
        with self._admin() as conn:
            conn.execute(query.format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database from ``create_database``, disconnecting leftover pools."""
        name = url.rsplit("/", 1)[1]
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class LazyPostgres:
    """Starts the shared server on first use, so SQLite-only runs never pay for it."""

    def __init__(self) -> None:
        self._server: PostgresServer | None = None
        self._error: Exception | None = None

    @property
    def server(self) -> PostgresServer:
        if self._error is not None:
            raise self._error
        if self._server is None:
            try:
                server = PostgresServer()
                server.start()
            except Exception as exc:
                self._error = exc
                raise
            self._server = server
        return self._server

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
