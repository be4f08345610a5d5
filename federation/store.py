"""The peer's database: every served call and the peer table, in SQLite (or any SQLAlchemy URL).

Writes stay off the request path: `record()` only puts the row on a bounded
in-memory queue; a background task writes queued rows in one transaction
every `LEDGER_FLUSH_SECONDS` from a worker thread. A full queue drops the row
and counts it rather than slow a call. Closing the store flushes what is
queued, so a clean stop loses nothing.

Every row is signed onto the writer's hash chain (`federation.ledger`) in
the writer thread, just before its INSERT; the chain head lives in memory
and its signed copy (`LedgerHead`) is replaced in the same transaction, so an
append stays one INSERT per call plus one head row per batch.

A database from before the chain gets the new columns on open; the first
writer with an identity then chains its rows as *legacy* (proof that they
were not changed since, not that they were true before).

The peer table is mirrored into `PeerRecord` rows (one set per observing
peer, replaced whole each time) so `mcpfed peers` can show what a running
peer sees without talking to it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from sqlalchemy import Connection, Engine, delete, insert, inspect, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, col, func, select

from federation.card import PeerCard
from federation.const import LEDGER_FLUSH_SECONDS, LEDGER_QUEUE_LIMIT
from federation.contract import PeerRow
from federation.database import open_engine
from federation.errors import ConfigError
from federation.identity import Identity
from federation.ledger import Chain, ChainReport, Head, verify

__all__ = ["CallRecord", "LedgerHead", "PeerRecord", "Store", "database_url", "ledger_databases"]

logger = logging.getLogger(__name__)


class CallRecord(SQLModel, table=True):
    """One tool call this peer served, or made to another peer (with that peer's signed receipt)."""

    id: int | None = Field(default=None, primary_key=True)
    role: str = Field(default="served", index=True, description="served (by this peer) or made (to callee)")
    trace_id: str | None = Field(default=None, index=True)
    span_id: str | None = None
    parent_span: str | None = None
    caller: str | None = Field(default=None, index=True)
    callee: str = Field(index=True)
    tool: str = Field(index=True)
    started: datetime = Field(index=True)
    ms: float
    outcome: str = Field(description="ok, error or cancelled")
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    receipt: str | None = Field(default=None, description="the callee's signed receipt, JSON")
    hops: str | None = Field(default=None, description="the forwarding peers' signed hop records that lead to the receipt, JSON")
    receipt_ok: bool | None = Field(default=None, description="receipt verified when received; None if none came")
    receipt_problem: str | None = None
    ledger_peer: str | None = Field(default=None, index=True, description="the peer whose hash chain holds this row (its writer)")
    seq: int | None = Field(default=None, description="position in the writer's chain, from 1")
    previous_hash: str | None = None
    event_hash: str | None = Field(default=None, description="sha256 of `event`")
    signature: str | None = Field(default=None, description="the writer's Ed25519 signature of event_hash, base64")
    event: str | None = Field(default=None, description="canonical JSON of the row's facts and chain place, as signed")


class LedgerHead(SQLModel, table=True):
    """Where a writer's chain ends, signed by it: rows deleted from the end of the chain show against it."""

    ledger_peer: str = Field(primary_key=True)
    pubkey: str = Field(description="the writer's Ed25519 public key, base64")
    seq: int
    event_hash: str
    signature: str


_ROW_DEFAULTS: dict[str, Any] = {
    name: field.get_default() for name, field in CallRecord.model_fields.items() if name != "id" and not field.is_required()
}
"""Every column's default, so rows of different shapes (served, made) go in one executemany."""


class PeerRecord(SQLModel, table=True):
    """One peer as seen by `observer` (a running peer) when it last saved its table: its `PeerRow` and card."""

    observer: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    name: str
    via: str = Field(description="best route: static, mdns or relay")
    url: str
    status: str = Field(description="up, suspect or dead")
    last_seen: float = Field(description="unix time of the last successful contact")
    latency_ms: float | None = None
    in_flight: int = 0
    queued: int = 0
    calls_served: int = 0
    card: str = Field(description="the peer's signed card, JSON")
    saved_at: float

    @classmethod
    def of(cls, observer: str, row: PeerRow, card: PeerCard, saved_at: float) -> PeerRecord:
        """The stored form of `row` (the columns the row and the record share) with its card."""
        shared = row.model_dump(include=set(cls.model_fields))
        return cls(observer=observer, card=card.model_dump_json(), saved_at=saved_at, **shared)

    def row(self) -> PeerRow:
        """The stored peer as a table row (models, tools and digest from its card)."""
        state = self.model_dump(include={"via", "url", "status", "in_flight", "queued", "calls_served"})
        return PeerRow.from_card(PeerCard.model_validate_json(self.card), latency_ms=self.latency_ms, last_seen=self.last_seen, **state)


def database_url(home: Path) -> str:
    return f"sqlite:///{home / 'mcpfed.db'}"


def ledger_databases(home: Path) -> list[tuple[str, str, Path]]:
    """(label, URL, state dir of its writer) of every ledger under a state dir: the peer's own, then each light member's.

    `Mesh` scripts and the gateway are light members with their own identity
    and store in `<home>/clients/<name>`; the calls they make are recorded
    there, so a ledger of this machine must read those too.
    """
    clients = sorted(path.parent for path in (home / "clients").glob("*/mcpfed.db"))
    return [("this peer", database_url(home), home)] + [(f"client {client.name}", database_url(client), client) for client in clients]


def _add_missing_columns(engine: Engine) -> None:
    """Give a ledger from an older version the columns added since (all nullable): `create_all` only makes missing tables."""
    table = CallRecord.__table__  # type: ignore[attr-defined]
    present = {column["name"] for column in inspect(engine).get_columns(table.name)}
    missing = [column for column in table.columns if column.name not in present]
    if not missing:
        return
    with engine.begin() as connection:
        for column in missing:
            kind = column.type.compile(dialect=engine.dialect)
            connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
        for index in table.indexes:
            if any(column in missing for column in index.columns):
                index.create(connection, checkfirst=True)


def _all_rows(connection: Connection) -> list[dict[str, Any]]:
    table = CallRecord.__table__  # type: ignore[attr-defined]
    return [dict(row) for row in connection.execute(select(table).order_by(table.c.id)).mappings()]


def _save_head(connection: Connection, chain: Chain, head: Head) -> None:
    signed = chain.signed_head(head)
    connection.execute(delete(LedgerHead).where(col(LedgerHead.ledger_peer) == signed["ledger_peer"]))
    connection.execute(insert(LedgerHead), [signed])


def _chain_legacy(connection: Connection, chain: Chain) -> None:
    """Sign the rows of a ledger written before the chain existed onto `chain`, marked legacy (only while nothing is chained yet)."""
    rows = _all_rows(connection)
    if not rows:
        return
    head = chain.link(rows, legacy=True)
    for row in rows:
        connection.execute(update(CallRecord).where(col(CallRecord.id) == row["id"]).values(**{k: v for k, v in row.items() if k != "id"}))
    _save_head(connection, chain, head)
    chain.head = head
    logger.info("ledger: %d rows from before the hash chain were chained as legacy", len(rows))


class Store:
    """A database engine plus the batching writer; `async with` runs the writer."""

    def __init__(self, url: str, identity: Identity | None = None) -> None:
        """Open (and create or upgrade) the database; `identity` signs the rows this store writes (readers pass none)."""
        try:
            self._engine: Engine = open_engine(url)
            SQLModel.metadata.create_all(self._engine)
            _add_missing_columns(self._engine)
            self._chain = None if identity is None else self._resume(identity)
        except (SQLAlchemyError, ImportError) as exc:
            raise ConfigError(f"cannot open database {url!r}: {exc}") from exc
        self._send, self._receive = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        self._queued = 0
        self._sent = 0
        self._written = 0
        self._batch_written: anyio.Event | None = None  # made by the first flush(): an Event needs a running loop
        self.dropped = 0
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> Store:
        if self._chain is None:
            raise TypeError("a Store that records calls needs the identity that signs them: Store(url, identity)")
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._write_batches)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._send.close()  # the writer drains what is queued, then ends
        assert self._task_group is not None
        await self._task_group.__aexit__(exc_type, exc, tb)
        self.close()

    def close(self) -> None:
        """Release the database connections (a store used only for sync queries, e.g. by the CLI)."""
        self._engine.dispose()

    def record(self, on_write: Callable[[dict[str, Any]], None] | None = None, **fields: Any) -> None:
        """Queue a `CallRecord` (its fields) for writing; never blocks.

        The row object is built in the writer thread: constructing a SQLModel
        costs ~40 µs, which the request path need not pay. `on_write(fields)`
        runs there too, first: work a row needs but the caller need not wait
        for (checking a receipt's signature).
        """
        if on_write is not None:
            fields["_on_write"] = on_write
        if self._queued >= LEDGER_QUEUE_LIMIT:
            self.dropped += 1
            return
        self._queued += 1
        self._sent += 1
        self._send.send_nowait(fields)

    async def flush(self) -> None:
        """Wait until every row queued before this call is written (readers of the ledger use it instead of sleeping)."""
        target = self._sent
        while self._written < target:
            if self._batch_written is None:
                self._batch_written = anyio.Event()
            await self._batch_written.wait()

    async def _write_batches(self) -> None:
        with self._receive:
            while True:
                try:
                    first = await self._receive.receive()
                except anyio.EndOfStream:
                    return
                await anyio.sleep(LEDGER_FLUSH_SECONDS)
                batch = [first]
                while True:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                self._queued -= len(batch)
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._write, batch)
                self._written += len(batch)
                if self._batch_written is not None:
                    self._batch_written.set()
                    self._batch_written = None

    def _write(self, batch: Sequence[dict[str, Any]]) -> None:
        """One executemany INSERT: building ORM objects for a batch held the GIL ~8 ms, a p99 spike for callers.

        The rows are signed onto the chain first; the head moves only once
        they are stored, so a failed write leaves no gap in the chain.
        """
        assert self._chain is not None
        for fields in batch:
            if (on_write := fields.pop("_on_write", None)) is not None:
                on_write(fields)
        rows = [_ROW_DEFAULTS | fields for fields in batch]
        head = self._chain.link(rows)
        with self._engine.begin() as connection:
            connection.execute(insert(CallRecord), rows)
            _save_head(connection, self._chain, head)
        self._chain.head = head

    def _resume(self, identity: Identity) -> Chain:
        """The chain of `identity` as stored: continued from its signed head, or begun (chaining a pre-chain ledger's rows as legacy)."""
        chain = Chain(identity, Head())
        with self._engine.begin() as connection:
            head = connection.execute(select(LedgerHead.seq, LedgerHead.event_hash).where(LedgerHead.ledger_peer == identity.peer_id)).first()
            last = connection.execute(
                select(CallRecord.seq, CallRecord.event_hash).where(CallRecord.ledger_peer == identity.peer_id).order_by(CallRecord.seq.desc()).limit(1)  # type: ignore[union-attr]
            ).first()
            if head is not None:
                chain.head = Head(head[0], head[1])
            elif last is not None:
                logger.warning("ledger: the signed head of this peer's chain is missing; continuing after position %s (rows deleted from its end before now cannot be told)", last[0])
                chain.head = Head(last[0], last[1])
            elif connection.execute(select(func.count()).select_from(CallRecord).where(CallRecord.event != None)).one()[0] == 0:  # noqa: E711
                _chain_legacy(connection, chain)
        return chain

    # -- queries (sync; call from a thread or a CLI) -------------------------
    def calls(self, limit: int = 100) -> list[CallRecord]:
        with Session(self._engine) as session:
            return list(session.exec(select(CallRecord).order_by(col(CallRecord.id).desc()).limit(limit)))

    def rows(self) -> list[dict[str, Any]]:
        """Every call row with all its columns, oldest first (what `verify` and an export read)."""
        with self._engine.connect() as connection:
            return _all_rows(connection)

    def heads(self) -> list[dict[str, Any]]:
        """The signed head of each writer's chain."""
        with self._engine.connect() as connection:
            return [dict(row) for row in connection.execute(select(LedgerHead.__table__)).mappings()]  # type: ignore[attr-defined]

    def verify(self, expected_peer: str | None = None) -> ChainReport:
        """Check every row and chain (`federation.ledger.verify`): the verified facts and what is wrong, by row."""
        return verify(self.rows(), self.heads(), expected_peer=expected_peer)

    def save_peers(self, observer: str, rows: Sequence[PeerRecord], *, only: Collection[str] | None = None) -> None:
        """Replace what `observer` knows with `rows`, in one transaction (sync: run it in a thread).

        `only`: replace just the rows of these peer ids (those not in `rows` are deleted) and keep the others.
        """
        mine = col(PeerRecord.observer) == observer
        with Session(self._engine) as session:
            session.execute(delete(PeerRecord).where(mine if only is None else mine & col(PeerRecord.id).in_(list(only))))
            session.add_all(rows)
            session.commit()

    def peers(self, observer: str) -> list[PeerRecord]:
        with Session(self._engine) as session:
            return list(session.exec(select(PeerRecord).where(PeerRecord.observer == observer).order_by(PeerRecord.name, PeerRecord.id)))

    def count_calls(self) -> int:
        with Session(self._engine) as session:
            return session.exec(select(func.count()).select_from(CallRecord)).one()


def utcnow() -> datetime:
    return datetime.now(UTC)
