"""The ledger's hash chain: every row a peer writes is signed by it and linked to the row before.

Each row (a call served or made) carries `event`, the canonical JSON (sorted
keys, no whitespace) of its facts plus its place in the chain (`seq`,
`previous_hash`) and the writer's key; `event_hash` is the sha256 of those
bytes and `signature` the writer's Ed25519 signature of `event_hash` — the
fields of the draft MCP tamper-evident audit record. The columns beside
`event` are an index for queries; the signed event is the truth, so a
verifier names every column that no longer says what was signed.

A signed *head* (the last position and hash, one row per writer, updated
with each batch) makes rows deleted from the end visible too. What the
chain cannot show: a writer that lied when it wrote, or a whole ledger
rolled back to an older copy (keep an export elsewhere for that).

`Chain` is the writer's end (kept in memory by the store); `verify` checks
rows from a database or an export, and `summarize` totals only what verified.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from federation.identity import Identity, b64decode_exact, peer_id_for, verify_signature
from federation.receipt import canonical_json, check_stored

__all__ = [
    "EXPORT_FORMAT",
    "FACTS",
    "GENESIS",
    "Chain",
    "ChainReport",
    "Finding",
    "Head",
    "export_lines",
    "fact_value",
    "read_export",
    "summarize",
    "verify",
]

GENESIS = "0" * 64
"""`previous_hash` of a chain's first row."""

EXPORT_FORMAT = "mcpfed-ledger/1"

FACTS = (
    "role", "trace_id", "span_id", "parent_span", "caller", "callee", "tool", "started", "ms", "outcome", "error",
    "tokens_in", "tokens_out", "receipt", "hops", "receipt_ok", "receipt_problem",
)  # fmt: skip
"""The columns of a call that the chain signs (everything but the database's own `id` and the chain columns)."""

_LINK = ("ledger_peer", "seq", "previous_hash")

_UNCHAINED = (
    "none of its {rows} rows is signed: a ledger from before the hash chain; run its peer once "
    "(`mcpfed serve`, or the script or gateway that owns it) to sign them onto the chain as legacy"
)
"""Chain columns that are also inside the signed event."""


def fact_value(name: str, value: Any) -> Any:
    """A column's value as it is signed: times as naive UTC ISO text (what SQLite and PostgreSQL both give back)."""
    if name == "started" and isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds")
    return value


def _digest(event: bytes) -> str:
    return hashlib.sha256(event).hexdigest()


@dataclass(frozen=True)
class Head:
    """A chain's last position and the hash of the row there (`seq` 0 and `GENESIS` before the first row)."""

    seq: int = 0
    event_hash: str = GENESIS


def _head_claim(peer: str, head: Head) -> bytes:
    return canonical_json({"ledger_peer": peer, "seq": head.seq, "event_hash": head.event_hash})


class Chain:
    """The writer's end of one peer's chain: its key and the head, kept in memory so an append is one INSERT."""

    def __init__(self, identity: Identity, head: Head) -> None:
        self._identity = identity
        self._pubkey = base64.b64encode(identity.public_key).decode("ascii")
        self.head = head

    def link(self, rows: Sequence[dict[str, Any]], *, legacy: bool = False) -> Head:
        """Sign `rows` in order onto the chain (chain columns added in place); the new head, which the caller applies once they are stored.

        `legacy` marks rows written before the chain existed: chaining them
        proves they were not changed after that, not that they were true before.
        """
        head = self.head
        for row in rows:
            if isinstance(row.get("started"), datetime):  # stored as the UTC instant that is signed
                row["started"] = datetime.fromisoformat(fact_value("started", row["started"])).replace(tzinfo=UTC)
            facts = {name: fact_value(name, row.get(name)) for name in FACTS}
            place = {"ledger_peer": self._identity.peer_id, "seq": head.seq + 1, "previous_hash": head.event_hash}
            event = canonical_json(facts | place | {"pubkey": self._pubkey} | ({"legacy": True} if legacy else {}))
            event_hash = _digest(event)
            signature = base64.b64encode(self._identity.sign(event_hash.encode("ascii"))).decode("ascii")
            row.update(place, event=event.decode("utf-8"), event_hash=event_hash, signature=signature)
            head = Head(head.seq + 1, event_hash)
        return head

    def signed_head(self, head: Head) -> dict[str, Any]:
        """The columns of this peer's head record for `head`."""
        signature = self._identity.sign(_head_claim(self._identity.peer_id, head))
        return {
            "ledger_peer": self._identity.peer_id,
            "pubkey": self._pubkey,
            "seq": head.seq,
            "event_hash": head.event_hash,
            "signature": base64.b64encode(signature).decode("ascii"),
        }


# -- verification ---------------------------------------------------------------


@dataclass
class Finding:
    """What is wrong with one row (`row` is its id in the database or export) or, without a row, with a whole chain."""

    row: int | None
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = "chain" if self.row is None else f"row {self.row}" + (f" (chain position {self.seq})" if self.seq is not None else "")
        return f"{where}: {self.problem}"


@dataclass
class ChainReport:
    """The verdict on one ledger: the facts of every row that verified, and a finding for everything that did not."""

    peers: list[str] = field(default_factory=list)
    rows: int = 0
    facts: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    failed: int = 0
    receipts: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings


def _decode(pubkey: Any) -> bytes | None:
    try:
        return b64decode_exact(pubkey)
    except (TypeError, ValueError):
        return None


def _signed_by(pubkey: bytes | None, peer: Any, signature: Any, message: bytes) -> bool:
    raw = _decode(signature)
    return pubkey is not None and raw is not None and peer_id_for(pubkey) == peer and verify_signature(pubkey, raw, message)


def _event_of(row: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The row's signed event (when it can be read, to place the row in its chain) and why it cannot be trusted, if so."""
    text = row.get("event")
    if not isinstance(text, str):
        return None, "not in the hash chain (no signed record): a row added behind the writer's back"
    try:
        event = json.loads(text)
    except ValueError:
        return None, "its signed record is not JSON"
    if not isinstance(event, dict):
        return None, "its signed record is not a JSON object"
    if _digest(text.encode("utf-8")) != row.get("event_hash"):
        return event, "its signed record was altered (it no longer hashes to event_hash)"
    if not _signed_by(_decode(event.get("pubkey")), event.get("ledger_peer"), row.get("signature"), str(row["event_hash"]).encode("ascii")):
        return event, "bad signature (not signed by the key of the peer it names)"
    return event, None


def _changed(row: dict[str, Any], event: dict[str, Any]) -> list[str]:
    """The columns whose stored value is not the signed one, each with both values."""
    changes = []
    for name in (*FACTS, *_LINK):
        stored, signed = fact_value(name, row.get(name)), event.get(name)
        if stored != signed:
            what = "removed" if stored is None else f"signed {_short(signed)}, stored {_short(stored)}"
            changes.append(f"{name} ({what})")
    return changes


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _receipt_problems(row: dict[str, Any], seen: dict[str, int], *, legacy: bool) -> list[str]:
    """Whether a stored receipt marked verified still holds: its signatures, that it is for this call, that no other row holds it.

    A receipt marked bad is left as recorded: what made it bad (a result
    that did not match) cannot be re-checked without the result. A legacy
    row's receipt is not matched to its call: rows from before the chain
    kept no hop records, so a forwarded call's receipt names another span.
    """
    if row.get("receipt") is None:
        return ["receipt_ok is set but the row holds no receipt"] if row.get("receipt_ok") is not None else []
    try:
        receipt, hops = json.loads(row["receipt"]), json.loads(row.get("hops") or "[]")
    except (TypeError, ValueError):
        return ["stored receipt is not JSON"]
    if not isinstance(receipt, dict) or not isinstance(hops, list) or not all(isinstance(h, dict) for h in hops):
        return ["stored receipt is malformed"]
    problems = []
    signature = str(receipt.get("sig"))
    if signature in seen:
        problems.append(f"receipt copied: row {seen[signature]} holds the same receipt")
    else:
        seen[signature] = row["id"]
    if not row.get("receipt_ok"):
        return problems
    first, problem = check_stored(receipt, hops)
    if first is None:
        return [*problems, f"receipt marked verified but does not verify: {problem}"]
    if legacy:
        return problems
    mismatched = [name for name in ("trace_id", "span_id") if first.get(name) != row.get(name)]
    mismatched += [name for name in ("tokens_in", "tokens_out") if receipt.get(name) != row.get(name)]
    if mismatched:
        problems.append(f"receipt is for another call: {', '.join(mismatched)} differ from the receipt's")
    return problems


@dataclass(frozen=True)
class _Link:
    """A row's place in its chain, as signed."""

    row: int
    seq: int
    event_hash: str
    previous_hash: str


def _link_problem(link: _Link, previous: _Link | None) -> str | None:
    expected = (previous.seq if previous else 0) + 1
    if link.seq < expected and previous is not None:
        return f"repeats chain position {link.seq} (row {previous.row} is there): a copied or replayed row"
    if link.seq > expected:
        missing = link.seq - expected
        return f"broken link: {missing} row{'s' if missing > 1 else ''} missing before this one (chain position {expected}{f'-{link.seq - 1}' if missing > 1 else ''} deleted)"
    if link.previous_hash != (previous.event_hash if previous else GENESIS):
        return "broken link: does not follow the row before it (a row inserted or replaced there)"
    return None


def _place(row: dict[str, Any], event: dict[str, Any]) -> _Link | str:
    seq = event.get("seq")
    if not isinstance(seq, int) or seq < 1:
        return "its signed record has no chain position"
    return _Link(row["id"], seq, str(row.get("event_hash")), str(event.get("previous_hash")))


def verify(rows: Iterable[dict[str, Any]], heads: Iterable[dict[str, Any]], *, expected_peer: str | None = None) -> ChainReport:
    """Check every row of one ledger (its columns as dicts, with `id`) and the heads of its chains.

    A row passes when its record is signed by its writer, every column says
    what was signed, it links to the row before it in its writer's chain,
    and its receipt chain (if any) holds and belongs to it. `expected_peer`
    (the state dir's own id) also requires every chain to be that peer's.
    """
    report = ChainReport()
    problems: dict[int, list[str]] = defaultdict(list)
    chains: dict[str, list[_Link]] = defaultdict(list)
    events: dict[int, tuple[dict[str, Any], int | None]] = {}
    seen_receipts: dict[str, int] = {}
    heads_by_peer = {str(head.get("ledger_peer")): head for head in heads}
    for row in sorted(rows, key=lambda r: r["id"]):
        report.rows += 1
        event, problem = _event_of(row)
        problems[row["id"]] += [problem] if problem else []
        if event is not None:
            if changes := _changed(row, event):
                problems[row["id"]].append("changed fields: " + ", ".join(changes))
            place = _place(row, event)
            if isinstance(place, str):
                problems[row["id"]].append(place)
            else:
                chains[str(event.get("ledger_peer"))].append(place)
                events[row["id"]] = (event, place.seq)
        problems[row["id"]] += _receipt_problems(row, seen_receipts, legacy=bool(event and event.get("legacy")))
        report.receipts += row.get("receipt") is not None
    for peer in sorted(set(chains) | set(heads_by_peer)):
        links = chains.get(peer, [])
        report.peers.append(peer)
        if expected_peer is not None and peer != expected_peer:
            report.findings.append(Finding(None, None, f"rows signed by peer {peer}, not by this state dir's peer ({expected_peer})"))
        previous: _Link | None = None
        for link in sorted(links, key=lambda link: (link.seq, link.row)):
            if problem := _link_problem(link, previous):
                problems[link.row].append(problem)
            if previous is None or link.seq > previous.seq:
                previous = link
        if problem := _head_problem(peer, heads_by_peer.get(peer), previous):
            report.findings.append(Finding(None, None, problem))
    if report.rows and not chains and not heads_by_peer:  # a ledger from before the chain, not yet upgraded by its writer
        report.findings.append(Finding(None, None, _UNCHAINED.format(rows=report.rows)))
        report.failed = report.rows
        return report
    bad = {row for row, found in problems.items() if found}
    report.findings += [Finding(row, events[row][1] if row in events else None, "; ".join(problems[row])) for row in sorted(bad)]
    report.failed = len(bad)
    report.facts = [event for row, (event, _) in events.items() if row not in bad]
    return report


def _head_problem(peer: str, head: dict[str, Any] | None, last: _Link | None) -> str | None:
    """Whether the signed head says the chain of `peer` ends where its last row is (rows deleted from the end show here)."""
    if head is None:
        return f"the chain of peer {peer} has no signed head: rows at its end may have been deleted"
    claim = Head(int(head.get("seq") or 0), str(head.get("event_hash")))
    if not _signed_by(_decode(head.get("pubkey")), peer, head.get("signature"), _head_claim(peer, claim)):
        return f"the head of peer {peer}'s chain has a bad signature"
    last_seq = last.seq if last else 0
    if claim.seq > last_seq:
        missing = claim.seq - last_seq
        return f"{missing} row{'s' if missing > 1 else ''} missing at the end of peer {peer}'s chain (the signed head is at position {claim.seq}, the last row at {last_seq})"
    if claim.seq < last_seq:
        return f"rows after the signed head of peer {peer}'s chain (position {claim.seq}): added behind the writer's back"
    if last is not None and last.event_hash != claim.event_hash:
        return f"the last row of peer {peer}'s chain is not the one its head signed"
    return None


def summarize(facts: Iterable[dict[str, Any]], *, by: str = "peer", since: datetime | None = None) -> list[dict[str, Any]]:
    """Who served how much, from verified facts only: calls, outcomes, tokens and receipts per callee (or tool) and role."""
    after = fact_value("started", since) if since is not None else None
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for fact in facts:
        if after is None or str(fact.get("started")) >= after:
            role = str(fact.get("role")) + (" (legacy)" if fact.get("legacy") else "")
            groups[(str(fact.get("callee" if by == "peer" else "tool")), role)].append(fact)
    return [
        {
            "key": key,
            "role": role,
            "calls": len(group),
            "ok": sum(f.get("outcome") == "ok" for f in group),
            "tokens_in": sum(int(f.get("tokens_in") or 0) for f in group),
            "tokens_out": sum(int(f.get("tokens_out") or 0) for f in group),
            "avg_ms": round(sum(float(f.get("ms") or 0.0) for f in group) / len(group), 1),
            "receipts_ok": sum(f.get("receipt_ok") is True for f in group),
            "receipts_bad": sum(f.get("receipt_ok") is False for f in group),
        }
        for (key, role), group in sorted(groups.items())
    ]


# -- export ---------------------------------------------------------------------


def export_lines(label: str, rows: Iterable[dict[str, Any]], heads: Iterable[dict[str, Any]]) -> Iterator[str]:
    """One ledger as JSON lines: a header (format, label, the signed heads with each writer's public key), then each row.

    The rows keep every column as stored, signed record included, so the
    export verifies anywhere with `verify` (`mcpfed ledger verify --file`).
    """
    yield json.dumps({"format": EXPORT_FORMAT, "ledger": label, "heads": list(heads)})
    for row in rows:
        yield json.dumps({"row": {name: fact_value(name, value) for name, value in row.items()}})


def read_export(lines: Iterable[str]) -> list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]]:
    """The ledgers of an export: (label, rows, heads) each; ValueError (saying which line) if it is not one."""
    ledgers: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"line {number} is not JSON ({exc})") from exc
        if isinstance(item, dict) and item.get("format") == EXPORT_FORMAT and isinstance(item.get("heads"), list):
            ledgers.append((str(item.get("ledger")), [], [head for head in item["heads"] if isinstance(head, dict)]))
        elif isinstance(item, dict) and isinstance(item.get("row"), dict) and isinstance(item["row"].get("id"), int) and ledgers:
            ledgers[-1][1].append(item["row"])
        else:
            raise ValueError(f"line {number} is neither a {EXPORT_FORMAT} header nor a row with an id after one")
    if not ledgers:
        raise ValueError(f"it holds no {EXPORT_FORMAT} ledger")
    return ledgers
