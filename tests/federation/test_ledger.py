"""The ledger is tamper-evident: every way of editing the SQLite file behind the peer's back is named by `verify`, by row.

The ledger is written by the real `Store` (served rows, made rows with real
signed receipts, one forwarded through a hop); each test edits a copy of the
file with the sqlite3 module, as anyone with the file could, and expects the
verifier to name the row and what was done to it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mcp.types as types
import pytest

from federation.identity import Identity
from federation.ledger import ChainReport, read_export, summarize
from federation.receipt import RECEIPT_META_KEY, add_hop, ledger_fields, sign_receipt
from federation.store import Store, database_url
from tests.support.cli import mcpfed

pytestmark = pytest.mark.anyio

WRITER, FORWARDER, CALLEE = (Identity.generate() for _ in range(3))
RESULT = types.CallToolResult(content=[types.TextContent(type="text", text="four")])


def served(trace_id: str, tokens_in: int = 3, tokens_out: int = 7) -> dict[str, Any]:
    started = datetime.now(UTC)
    return dict(role="served", trace_id=trace_id, span_id=f"s-{trace_id}", caller="someone", callee=WRITER.peer_id, tool="generate",
                started=started, ms=12.5, outcome="ok", tokens_in=tokens_in, tokens_out=tokens_out)  # fmt: skip


def made(trace_id: str, *, via: Identity | None = None) -> dict[str, Any]:
    """A call this peer made to CALLEE (or to `via`, which forwarded it there), with the receipt chain that came back."""
    receipt = sign_receipt(CALLEE, trace_id=trace_id, span_id=f"s-{trace_id}", tool="generate", tokens_in=5, tokens_out=9, result=RESULT)
    meta: dict[str, Any] = {RECEIPT_META_KEY: receipt}
    if via is not None:
        receipt = sign_receipt(CALLEE, trace_id=trace_id, span_id="s-inner", tool="generate", tokens_in=5, tokens_out=9, result=RESULT)
        meta = add_hop(via, {RECEIPT_META_KEY: receipt}, trace_id=trace_id, span_id=f"s-{trace_id}", tool="callee__generate")
    called = (via or CALLEE).peer_id
    fields = served(trace_id, 5, 9) | {"role": "made", "caller": WRITER.peer_id, "callee": called}
    return fields | ledger_fields(meta, RESULT, called)


ROWS = [served("t1"), made("t2"), made("t3", via=FORWARDER), served("t4"), made("t5"), served("t6")]
"""Row ids 1-6; 2 and 5 hold direct receipts, 3 a receipt forwarded through one hop."""


@pytest.fixture(scope="module")
async def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("ledger")
    async with Store(database_url(home), WRITER) as store:
        for row in ROWS:
            store.record(**dict(row))
    return home / "mcpfed.db"


@pytest.fixture
def ledger_file(written: Path, tmp_path: Path) -> Path:
    """A fresh copy of the written ledger for one test to tamper with."""
    return Path(shutil.copy(written, tmp_path / "mcpfed.db"))


def tamper(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)


def check(path: Path) -> ChainReport:
    store = Store(f"sqlite:///{path}")
    try:
        return store.verify(expected_peer=WRITER.peer_id)
    finally:
        store.close()


def findings(report: ChainReport) -> dict[int | None, str]:
    return {finding.row: finding.problem for finding in report.findings}


async def test_an_untouched_ledger_verifies_every_row_and_receipt_including_the_hop_chain(ledger_file: Path) -> None:
    report = check(ledger_file)
    assert report.ok, [str(f) for f in report.findings]
    assert (report.rows, report.failed, report.peers) == (6, 0, [WRITER.peer_id])
    assert sorted(f["trace_id"] for f in report.facts) == ["t1", "t2", "t3", "t4", "t5", "t6"]
    hopped = next(f for f in report.facts if f["trace_id"] == "t3")
    assert (hopped["callee"], hopped["receipt_ok"], len(json.loads(hopped["hops"]))) == (CALLEE.peer_id, True, 1), "credited to the server, hop kept"


TAMPERING: list[tuple[str, list[str], int | None, str]] = [
    ("tokens", ["UPDATE callrecord SET tokens_in = 999999, tokens_out = 999999 WHERE id = 1"], 1,
     "changed fields: tokens_in (signed 3, stored 999999), tokens_out (signed 7, stored 999999)"),
    ("trace_id", ["UPDATE callrecord SET trace_id = 'forged' WHERE id = 4"], 4, 'changed fields: trace_id (signed "t4", stored "forged")'),
    ("tool", ["UPDATE callrecord SET tool = 'embed' WHERE id = 2"], 2, 'changed fields: tool (signed "generate", stored "embed")'),
    ("copied-receipt", ["UPDATE callrecord SET receipt = (SELECT receipt FROM callrecord WHERE id = 2) WHERE id = 5"], 5,
     "receipt copied: row 2 holds the same receipt"),
    ("receipt-for-another-call", ["UPDATE callrecord SET receipt = (SELECT receipt FROM callrecord WHERE id = 2), "
     "receipt_ok = 1, hops = NULL WHERE id = 4"], 4, "receipt is for another call: trace_id, span_id, tokens_in, tokens_out differ"),
    ("deleted-row", ["DELETE FROM callrecord WHERE id = 3"], 4, "broken link: 1 row missing before this one (chain position 3 deleted)"),
    ("deleted-last-row", ["DELETE FROM callrecord WHERE id = 6"], None, "1 row missing at the end of peer"),
    ("receipt-null", ["UPDATE callrecord SET receipt = NULL WHERE id = 2"], 2, "changed fields: receipt (removed)"),
    ("receipt-ok-flipped", ["UPDATE callrecord SET receipt_ok = 0 WHERE id = 5"], 5, "changed fields: receipt_ok (signed true, stored false)"),
    ("hop-dropped", ["UPDATE callrecord SET hops = NULL WHERE id = 3"], 3, "changed fields: hops (removed)"),
    ("served-row", ["UPDATE callrecord SET outcome = 'error', ms = 1.0, callee = 'someone-else' WHERE id = 6"], 6,
     'changed fields: callee (signed "' + WRITER.peer_id + '", stored "someone-else"), ms (signed 12.5, stored 1.0), outcome'),
    ("made-up-row", ["INSERT INTO callrecord (role, callee, tool, started, ms, outcome, tokens_in, tokens_out) "
     "SELECT role, callee, tool, started, ms, outcome, 50, 50 FROM callrecord WHERE id = 1"], 7,
     "not in the hash chain (no signed record)"),
    ("replayed-row", ["INSERT INTO callrecord SELECT 7, role, trace_id, span_id, parent_span, caller, callee, tool, started, ms, outcome, error, "
     "tokens_in, tokens_out, receipt, hops, receipt_ok, receipt_problem, ledger_peer, seq, previous_hash, event_hash, signature, event "
     "FROM callrecord WHERE id = 1"], 7, "repeats chain position 1 (row 1 is there): a copied or replayed row"),
    ("record-rewritten", ["UPDATE callrecord SET event = replace(event, '\"tokens_in\":3', '\"tokens_in\":30') WHERE id = 1"], 1,
     "its signed record was altered"),
    ("resigned-by-another-key", ["UPDATE callrecord SET signature = (SELECT signature FROM callrecord WHERE id = 4) WHERE id = 1"], 1,
     "bad signature"),
    ("reordered", ["UPDATE callrecord SET seq = 5 WHERE id = 4", "UPDATE callrecord SET seq = 4 WHERE id = 5"], 4,
     "changed fields: seq (signed 4, stored 5)"),
    ("head-deleted", ["DELETE FROM ledgerhead"], None, "has no signed head: rows at its end may have been deleted"),
]  # fmt: skip


@pytest.mark.parametrize(("statements", "row", "named"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING])
async def test_each_kind_of_tampering_is_named_by_row(ledger_file: Path, statements: list[str], row: int | None, named: str) -> None:
    tamper(ledger_file, *statements)
    report = check(ledger_file)
    assert not report.ok
    assert named in findings(report).get(row, ""), [str(f) for f in report.findings]


async def test_a_failing_row_is_never_counted_for_what_it_claims(ledger_file: Path) -> None:
    tamper(ledger_file, "UPDATE callrecord SET tokens_out = 999999 WHERE id = 1")
    report = check(ledger_file)
    totals = {(t["key"], t["role"]): t for t in summarize(report.facts)}
    assert totals[(WRITER.peer_id, "served")]["tokens_out"] == 14, "rows 4 and 6 only: row 1 fails and its claim is dropped"
    assert report.failed == 1


async def test_a_chain_signed_under_another_key_does_not_pass_for_this_peers(ledger_file: Path) -> None:
    store = Store(f"sqlite:///{ledger_file}")
    try:
        report = store.verify(expected_peer=FORWARDER.peer_id)
    finally:
        store.close()
    assert f"rows signed by peer {WRITER.peer_id}, not by this state dir's peer ({FORWARDER.peer_id})" in findings(report)[None]


async def test_appends_continue_the_chain_across_restarts(written: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(written, home / "mcpfed.db")
    async with Store(database_url(home), WRITER) as store:
        store.record(**served("t7"))
    report = check(home / "mcpfed.db")
    assert report.ok and report.rows == 7, [str(f) for f in report.findings]


async def test_a_ledger_from_before_the_chain_is_chained_as_legacy_when_its_peer_starts(tmp_path: Path) -> None:
    """Old files get the new columns and their rows are signed as legacy, once; what is written after verifies as usual."""
    path = tmp_path / "mcpfed.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE callrecord (id INTEGER PRIMARY KEY, role VARCHAR, trace_id VARCHAR, span_id VARCHAR, parent_span VARCHAR, "
                   "caller VARCHAR, callee VARCHAR NOT NULL, tool VARCHAR NOT NULL, started DATETIME NOT NULL, ms FLOAT NOT NULL, "
                   "outcome VARCHAR NOT NULL, error VARCHAR, tokens_in INTEGER, tokens_out INTEGER, receipt VARCHAR, receipt_ok BOOLEAN, "
                   "receipt_problem VARCHAR)")  # fmt: skip
        db.execute("INSERT INTO callrecord (role, callee, tool, started, ms, outcome, tokens_in, tokens_out) "
                   "VALUES ('served', 'old-peer', 'generate', '2026-01-02 03:04:05.000000', 9.0, 'ok', 1, 2)")  # fmt: skip
        forwarded = sign_receipt(CALLEE, trace_id="t9", span_id="s-inner", tool="generate", tokens_in=5, tokens_out=9, result=RESULT)
        db.execute("INSERT INTO callrecord (role, trace_id, span_id, callee, tool, started, ms, outcome, tokens_in, tokens_out, receipt, receipt_ok) "
                   "VALUES ('made', 't9', 's-outer', ?, 'b__generate', '2026-01-02 03:04:06.000000', 9.0, 'ok', 5, 9, ?, 1)",
                   (CALLEE.peer_id, json.dumps(forwarded)))  # fmt: skip  # hop records were not kept then
    async with Store(database_url(tmp_path), WRITER) as store:
        store.record(**served("new"))
    report = check(path)
    assert report.ok, [str(f) for f in report.findings]
    assert {(t["key"], t["role"], t["tokens_out"]) for t in summarize(report.facts)} == {
        ("old-peer", "served (legacy)", 2),
        (CALLEE.peer_id, "made (legacy)", 9),
        (WRITER.peer_id, "served", 7),
    }


async def test_ledger_verify_and_show_on_a_tampered_file(ledger_file: Path, env: dict[str, str]) -> None:
    """The CLI: `verify` exits 1 naming the row and the change; `show` lists the row as failing, never its 999,999 tokens."""
    tamper(ledger_file, "UPDATE callrecord SET tokens_out = 999999 WHERE id = 4")
    url = f"sqlite:///{ledger_file}"
    verified = await mcpfed("ledger", "verify", "--db", url, env=env)
    assert verified.returncode == 1, verified.stderr
    assert "row 4 (chain position 4): changed fields: tokens_out (signed 7, stored 999999)" in verified.stderr
    assert "this peer: 5 of 6 rows verify" in verified.stdout
    shown = await mcpfed("ledger", "show", "--db", url, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "999999" not in shown.stdout and "(fails verification)" in shown.stdout, shown.stdout


async def test_an_export_verifies_offline_and_shows_tampering_done_to_it(ledger_file: Path, tmp_path: Path, env: dict[str, str]) -> None:
    exported = tmp_path / "ledger.jsonl"
    done = await mcpfed("ledger", "export", "--db", f"sqlite:///{ledger_file}", "--out", str(exported), env=env)
    assert done.returncode == 0, done.stderr
    ((label, rows, heads),) = read_export(exported.read_text().splitlines())
    assert (label, len(rows), heads[0]["pubkey"]) == ("this peer", 6, check(ledger_file).facts[0]["pubkey"]), "the writer's key travels"
    ledger_file.unlink()  # no database from here on
    clean = await mcpfed("ledger", "verify", "--file", str(exported), env=env)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.splitlines() == ["this peer: 6 of 6 rows verify (chain signed by " + WRITER.peer_id + ")", "3 of 3 receipts verify"]
    edited = [line.replace('"tokens_in": 5', '"tokens_in": 500') if '"id": 5' in line else line for line in exported.read_text().splitlines()]
    exported.write_text("\n".join(edited) + "\n")
    dirty = await mcpfed("ledger", "verify", "--file", str(exported), env=env)
    assert dirty.returncode == 1
    assert "row 5 (chain position 5): changed fields: tokens_in (signed 5, stored 500)" in dirty.stderr


@pytest.mark.parametrize(
    ("content", "says"),
    [("not json\n", "line 1 is not JSON"), ('{"row": {"id": 1}}\n', "line 1 is neither a mcpfed-ledger/1 header nor a row"), ("", "holds no")],
    ids=["not-json", "row-before-header", "empty"],
)
async def test_a_file_that_is_not_an_export_is_one_clear_error(tmp_path: Path, env: dict[str, str], content: str, says: str) -> None:
    from tests.support.cli import assert_one_line_error

    path = tmp_path / "ledger.jsonl"
    path.write_text(content)
    done = await mcpfed("ledger", "verify", "--file", str(path), env=env)
    assert_one_line_error(done, 2, says)


async def test_rows_written_by_a_real_peer_through_a_hop_verify(start_node: Callable[..., Any]) -> None:
    """carol -> bob -> alice on loopback: carol's row holds alice's receipt and bob's hop, and its ledger verifies."""
    from tests.support.mesh import echo_two_hops_away

    async with echo_two_hops_away(start_node) as (alice, bob, carol, _):
        report = carol.store.verify(expected_peer=carol.peer_id)
    hopped = [f for f in report.facts if f["role"] == "made" and f["hops"]]
    assert report.ok and hopped, [str(f) for f in report.findings]
    assert hopped[0]["callee"] == alice.peer_id and json.loads(hopped[0]["hops"])[0]["peer"] == bob.peer_id


async def test_the_chain_holds_on_postgresql_too(postgres_url: str) -> None:
    """The same Store on a real PostgreSQL (tests/support/postgres.py; skipped, saying why, where it cannot start)."""
    from sqlalchemy import text

    from federation.database import open_engine

    async with Store(postgres_url, WRITER) as store:
        for row in ROWS:
            store.record(**dict(row))
    reader = Store(postgres_url)
    try:
        assert reader.verify(expected_peer=WRITER.peer_id).ok
        engine = open_engine(postgres_url)
        with engine.begin() as connection:
            connection.execute(text("UPDATE callrecord SET tokens_in = 999999 WHERE id = 1"))
        engine.dispose()
        report = reader.verify(expected_peer=WRITER.peer_id)
    finally:
        reader.close()
    assert "changed fields: tokens_in (signed 3, stored 999999)" in findings(report)[1]


async def test_a_ledger_from_before_the_chain_says_how_to_upgrade_it_until_its_peer_runs(tmp_path: Path) -> None:
    path = tmp_path / "mcpfed.db"
    tamper(path, "CREATE TABLE callrecord (id INTEGER PRIMARY KEY, callee VARCHAR NOT NULL, tool VARCHAR NOT NULL, "
                 "started DATETIME NOT NULL, ms FLOAT NOT NULL, outcome VARCHAR NOT NULL)",
           "INSERT INTO callrecord (callee, tool, started, ms, outcome) VALUES ('old-peer', 'generate', '2026-01-02 03:04:05', 9.0, 'ok')")  # fmt: skip
    report = check(path)
    assert (report.failed, report.facts) == (1, [])
    assert "none of its 1 rows is signed: a ledger from before the hash chain; run its peer once" in findings(report)[None]
