"""The peer's database: every served call and the peer table, in SQLite (or any SQLAlchemy URL).

Writes stay off the request path: `record()` only puts the row on a bounded
in-memory queue; a background task writes queued rows in one transaction
every `LEDGER_FLUSH_SECONDS` from a worker thread. A full queue drops the row
and counts it rather than slow a call. Closing the store flushes what is
queued, so a clean stop loses nothing.

The peer table is mirrored into `PeerRecord` rows (one set per observing
peer, replaced whole each time) so `mcpfed peers` can show what a running
peer sees without talking to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from sqlalchemy import Engine, case, delete, insert
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, col, create_engine, func, select

from federation.card import PeerCard
from federation.const import LEDGER_FLUSH_SECONDS, LEDGER_QUEUE_LIMIT
from federation.contract import PeerRow
from federation.errors import ConfigError

__all__ = ["CallRecord", "PeerRecord", "Store", "database_url", "ledger_databases"]


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
    receipt_ok: bool | None = Field(default=None, description="receipt verified when received; None if none came")
    receipt_problem: str | None = None


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


def ledger_databases(home: Path) -> list[tuple[str, str]]:
    """(label, URL) of every ledger under a state dir: the peer's own, then each light member's.

    `Mesh` scripts and the gateway are light members with their own identity
    and store in `<home>/clients/<name>`; the calls they make are recorded
    there, so a ledger of this machine must read those too.
    """
    clients = sorted(path.parent for path in (home / "clients").glob("*/mcpfed.db"))
    return [("this peer", database_url(home))] + [(f"client {client.name}", database_url(client)) for client in clients]


def _count(condition: Any) -> Any:
    """SUM of a condition as an integer count (a bare SUM of a comparison comes back typed as a bool)."""
    return func.sum(case((condition, 1), else_=0))


class Store:
    """A database engine plus the batching writer; `async with` runs the writer."""

    def __init__(self, url: str) -> None:
        try:
            self._engine: Engine = create_engine(url, connect_args={"check_same_thread": False} if url.startswith("sqlite") else {})
            SQLModel.metadata.create_all(self._engine)
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

    def _write(self, rows: Sequence[dict[str, Any]]) -> None:
        """One executemany INSERT: building ORM objects for a batch held the GIL ~8 ms, a p99 spike for callers."""
        for fields in rows:
            if (on_write := fields.pop("_on_write", None)) is not None:
                on_write(fields)
        with self._engine.begin() as connection:
            connection.execute(insert(CallRecord), [_ROW_DEFAULTS | fields for fields in rows])

    # -- queries (sync; call from a thread or a CLI) -------------------------
    def calls(self, limit: int = 100) -> list[CallRecord]:
        with Session(self._engine) as session:
            return list(session.exec(select(CallRecord).order_by(col(CallRecord.id).desc()).limit(limit)))

    def ledger(self, *, by: str = "peer", since: datetime | None = None) -> list[dict[str, object]]:
        """Who served how much: calls, outcomes, tokens and receipts grouped by callee or tool."""
        key = CallRecord.callee if by == "peer" else CallRecord.tool
        query = select(  # type: ignore[call-overload]  # sqlmodel types select() for at most 4 columns; 9 work
            key,
            CallRecord.role,
            func.count(),
            _count(CallRecord.outcome == "ok"),
            func.sum(CallRecord.tokens_in),
            func.sum(CallRecord.tokens_out),
            func.avg(CallRecord.ms),
            _count(CallRecord.receipt_ok == True),  # noqa: E712 - SQL comparison
            _count(CallRecord.receipt_ok == False),  # noqa: E712
        ).group_by(key, CallRecord.role)
        if since is not None:
            query = query.where(CallRecord.started >= since)
        with Session(self._engine) as session:
            rows = session.exec(query).all()
        names = ("key", "role", "calls", "ok", "tokens_in", "tokens_out", "avg_ms", "receipts_ok", "receipts_bad")
        return [dict(zip(names, (r[0], r[1], r[2], r[3] or 0, r[4] or 0, r[5] or 0, round(r[6] or 0.0, 1), r[7] or 0, r[8] or 0), strict=True)) for r in rows]

    def receipts(self) -> list[tuple[int, str, str]]:
        """(row id, callee, receipt JSON) of every call made that came back with a receipt."""
        with Session(self._engine) as session:
            rows = session.exec(select(CallRecord.id, CallRecord.callee, CallRecord.receipt).where(CallRecord.receipt != None))  # noqa: E711
            return [(r[0], r[1], r[2]) for r in rows if r[0] is not None and r[2] is not None]  # both always are: narrows the types

    def save_peers(self, observer: str, rows: Sequence[PeerRecord]) -> None:
        """Replace what `observer` knows with `rows`, in one transaction (sync: run it in a thread)."""
        with Session(self._engine) as session:
            session.execute(delete(PeerRecord).where(col(PeerRecord.observer) == observer))
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
