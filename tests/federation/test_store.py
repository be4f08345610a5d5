"""The call ledger, in SQLite and in PostgreSQL (`db_url` runs each test on both): written in batches off the request path, nothing lost on a clean stop."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import federation.store
from federation.errors import ConfigError
from federation.identity import Identity
from federation.ledger import summarize
from federation.store import Store, database_url

pytestmark = pytest.mark.anyio

WRITER = Identity.generate()


def row(tool: str = "generate", callee: str = "peer-a", **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "callee": callee,
        "tool": tool,
        "started": datetime.now(UTC),
        "ms": 12.5,
        "outcome": "ok",
        "tokens_in": 3,
        "tokens_out": 7,
    }
    return values | fields


async def test_recorded_calls_are_written_by_the_background_writer(db_url: str) -> None:
    async with Store(db_url, WRITER) as store:
        store.record(**row(trace_id="t1"))
        assert store.count_calls() == 0, "record() only queues; the request path never waits for the database"
        await store.flush()
        (written,) = store.calls()
    assert (written.trace_id, written.tool, written.outcome, written.tokens_in, written.tokens_out) == ("t1", "generate", "ok", 3, 7)
    assert written.role == "served"


async def test_a_clean_stop_writes_everything_still_queued(db_url: str) -> None:
    async with Store(db_url, WRITER) as store:
        for index in range(50):
            store.record(**row(trace_id=f"t{index}"))
    reopened = Store(db_url)
    assert reopened.count_calls() == 50
    assert reopened.calls(limit=1)[0].trace_id == "t49", "newest first"


async def test_served_and_made_calls_are_written_in_one_batch(db_url: str) -> None:
    async with Store(db_url, WRITER) as store:
        store.record(**row())
        store.record(**row(role="made", caller="me", receipt='{"sig": "x"}', receipt_ok=True))
    written = {(r.role, r.caller, r.receipt_ok, r.tokens_in) for r in Store(db_url).calls()}
    assert written == {("served", None, None, 3), ("made", "me", True, 3)}


async def test_a_full_queue_drops_and_counts_instead_of_slowing_calls(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(federation.store, "LEDGER_QUEUE_LIMIT", 3)
    async with Store(db_url, WRITER) as store:
        for _ in range(5):
            store.record(**row())
        assert store.dropped == 2
    assert Store(db_url).count_calls() == 3


async def test_ledger_sums_calls_and_tokens_per_peer_and_per_tool(db_url: str) -> None:
    async with Store(db_url, WRITER) as store:
        store.record(**row("generate", "peer-a"))
        store.record(**row("generate", "peer-a", outcome="error"))
        store.record(**row("embed", "peer-b", tokens_in=10, tokens_out=0))
    facts = Store(db_url).verify().facts
    by_peer = {entry["key"]: entry for entry in summarize(facts, by="peer")}
    assert (by_peer["peer-a"]["calls"], by_peer["peer-a"]["ok"], by_peer["peer-a"]["tokens_out"]) == (2, 1, 14)
    by_tool = {entry["key"]: entry for entry in summarize(facts, by="tool")}
    assert (by_tool["embed"]["calls"], by_tool["embed"]["tokens_in"]) == (1, 10)


@pytest.mark.parametrize(
    "url",
    ["nosuchdriver://x", "sqlite:////nonexistent-dir/sub/ledger.db"],
    ids=["unknown-driver", "folder-missing"],
)
def test_database_that_cannot_be_opened_says_which(url: str) -> None:
    with pytest.raises(ConfigError, match="cannot open database"):
        Store(url)


def test_a_bare_postgresql_url_opens_with_psycopg_3(postgres_url: str) -> None:
    """`--db postgresql://...` as Postgres' docs write it: SQLAlchemy alone would want psycopg2, which is not installed."""
    assert postgres_url.startswith("postgresql://")
    store = Store(postgres_url)
    try:
        assert store.count_calls() == 0
    finally:
        store.close()


def test_a_reader_sees_what_was_committed_while_the_writer_holds_its_transaction_open(tmp_path: Path) -> None:
    """WAL: `mcpfed peers` / `mcpfed ledger` read a serving peer's store while it writes, without waiting for it."""
    url = database_url(tmp_path)
    writer, reader = Store(url, WRITER), Store(url)
    try:
        writer.save_peers("me", [])
        with writer._engine.connect() as busy:
            busy.exec_driver_sql("BEGIN EXCLUSIVE")
            busy.exec_driver_sql("DELETE FROM peerrecord")  # a write in progress, not committed
            assert reader.peers("me") == [] and reader.count_calls() == 0  # in rollback mode: "database is locked" after 5 s
            busy.rollback()
    finally:
        writer.close()
        reader.close()
