"""One way to open a database URL, for the peer's store and the relay's directory alike.

`--db postgresql://user:pw@host/db` is what people (and Postgres' own docs)
write, but SQLAlchemy reads a bare `postgresql://` as "use psycopg2", which
we do not ship: the `postgres` extra installs psycopg 3. So a bare
`postgres://` or `postgresql://` URL means psycopg 3; a URL naming its driver
(`postgresql+psycopg2://`) is left as it is.

A server database can go away and come back (a restart, a failover): the pool
checks a connection before handing it out (`pool_pre_ping`), so the first
query after an outage reconnects instead of failing on a dead socket.

SQLite files are opened in WAL mode with `synchronous=NORMAL`: a commit
appends to the log without waiting for the disk (fsync happens at
checkpoints), and readers (`mcpfed peers`, `mcpfed ledger`) never block the
serving peer's writes. A crashed process loses nothing committed; a power
cut can lose the last commits, never the file. Measured: while 100 peers met
on one machine, their stores' commits (each an fsync in the default rollback
mode) were ~5 % of the mesh's CPU.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from sqlalchemy import Engine, event
from sqlmodel import create_engine

__all__ = ["open_engine", "sqlalchemy_url"]

logger = logging.getLogger(__name__)

_BARE_POSTGRES = ("postgres://", "postgresql://")


def sqlalchemy_url(url: str) -> str:
    """`url` with the psycopg 3 driver named when it names none."""
    for prefix in _BARE_POSTGRES:
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def open_engine(url: str) -> Engine:
    """An engine for `url`: SQLite usable from the worker threads we query it from, servers reconnected after an outage."""
    url = sqlalchemy_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _write_ahead)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _write_ahead(connection: Any, _record: Any) -> None:
    """WAL and `synchronous=NORMAL` on every new SQLite connection (see the module docstring)."""
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.OperationalError as exc:  # a file we may only read: it stays in the mode it has
        logger.debug("SQLite kept its journal mode: %s", exc)
    finally:
        cursor.close()
