"""One way to open a database URL, for the peer's store and the relay's directory alike.

`--db postgresql://user:pw@host/db` is what people (and Postgres' own docs)
write, but SQLAlchemy reads a bare `postgresql://` as "use psycopg2", which
we do not ship: the `postgres` extra installs psycopg 3. So a bare
`postgres://` or `postgresql://` URL means psycopg 3; a URL naming its driver
(`postgresql+psycopg2://`) is left as it is.

A server database can go away and come back (a restart, a failover): the pool
checks a connection before handing it out (`pool_pre_ping`), so the first
query after an outage reconnects instead of failing on a dead socket.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import create_engine

__all__ = ["open_engine", "sqlalchemy_url"]

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
        return create_engine(url, connect_args={"check_same_thread": False})
    return create_engine(url, pool_pre_ping=True)
