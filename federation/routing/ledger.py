"""`CallLedger`: the books of every call this peer takes part in, served or made, kept in one place.

A call this peer serves (the tool host, or the fast path passing it on) and a
call it makes to another peer (the forwarder) each end in the same two
records: a `call_finished` event (the TUI's call log and topology) and a
ledger row in the store (`mcpfed ledger`). Both are built here from one set
of fields, so the two sides of an edge always agree on what a call is. For a
made call the callee's signed receipt is checked too, in the store's writer
thread, and the row credits the peer that actually served (a forwarded
call's hop records name it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import mcp.types as types

from federation.events import EventBus
from federation.peers import Peer
from federation.receipt import RECEIPT_META_KEY, ledger_fields
from federation.store import Store
from federation.toolhost import CallOutcome, ToolAnswer

__all__ = ["CallLedger"]

logger = logging.getLogger(__name__)


@dataclass
class _Call:
    """What the event and the row of one finished call share."""

    trace_id: str
    span_id: str
    parent: str | None
    caller: str | None
    callee: str
    tool: str
    ms: float
    outcome: str
    error: str | None
    tokens_in: int
    tokens_out: int


class CallLedger:
    """Events and ledger rows for the calls of the peer `peer_id`."""

    def __init__(self, *, store: Store, events: EventBus, peer_id: str) -> None:
        self._store = store
        self._events = events
        self._peer_id = peer_id

    def served_started(self, call: CallOutcome) -> None:
        """A call this peer serves began (the TUI shows it running)."""
        trace = call.trace
        self._events.publish("call_started", tool=call.tool, trace_id=trace.trace_id, span_id=trace.span_id, parent=trace.parent, caller=trace.caller, callee=self._peer_id)

    def served(self, call: CallOutcome) -> None:
        """A call this peer served ended."""
        trace = call.trace
        finished = _Call(trace.trace_id, trace.span_id, trace.parent, trace.caller, self._peer_id, call.tool, call.ms, call.outcome, call.error, call.tokens_in, call.tokens_out)
        self._record("served", finished, call.started)

    def lent(self, call: CallOutcome, shares: list[tuple[str, float]]) -> None:
        """A call this peer served on a split model: a `lent` row per lender, its tokens its share of the layers.

        The lender did that part of the work; its row names it as callee, this peer as caller, on the call's span.
        """
        trace = call.trace
        for lender, share in shares:
            tokens_in, tokens_out = round(call.tokens_in * share), round(call.tokens_out * share)
            part = _Call(trace.trace_id, trace.span_id, trace.parent, self._peer_id, lender, call.tool, call.ms, call.outcome, call.error, tokens_in, tokens_out)
            self._record("lent", part, call.started)

    def made(self, peer: Peer, tool: str, meta: dict[str, Any], result: ToolAnswer, started: float, ms: float) -> None:
        """A call this peer made to `peer` (as `tool`, with request `meta`) was answered with `result`.

        An `input_required` round is recorded as such, as its callee records it: no receipt comes with it.
        """
        span = next(iter(meta.values()))
        receipt = (result.meta or {}).get(RECEIPT_META_KEY)
        usage = receipt if isinstance(receipt, dict) else {}
        outcome = "input_required" if isinstance(result, types.InputRequiredResult) else "error" if result.is_error else "ok"
        finished = _Call(
            span["trace_id"], span["span_id"], span["parent"], self._peer_id, peer.id, tool, ms,
            outcome, None, int(usage.get("tokens_in", 0) or 0), int(usage.get("tokens_out", 0) or 0),
        )
        check = _receipt_check(peer, tool, result) if isinstance(receipt, dict) and isinstance(result, types.CallToolResult) else None
        self._record("made", finished, started, on_write=check)

    def _record(self, role: str, call: _Call, started: float, *, on_write: Callable[[dict[str, Any]], None] | None = None) -> None:
        fields = dict(vars(call))  # its fields are all plain values: `asdict`'s deep copy cost ~15 µs a call, three times a hop
        fields["ms"] = round(call.ms, 2)
        self._events.publish("call_finished", **fields)
        parent = fields.pop("parent")
        self._store.record(
            on_write=on_write, role=role, **fields | {"ms": round(call.ms, 3)}, parent_span=parent, started=datetime.fromtimestamp(started, UTC)
        )


def _receipt_check(peer: Peer, tool: str, result: types.CallToolResult) -> Callable[[dict[str, Any]], None]:
    """Checks the callee's receipt chain when the row is written (off the request path) and fills the row's receipt fields."""

    def check(fields: dict[str, Any]) -> None:
        fields.update(ledger_fields(result.meta or {}, result, peer.id))  # credits the peer that served, as its hop records name
        if problem := fields.get("receipt_problem"):
            logger.warning("receipt from %s for %s flagged: %s", peer.name, tool, problem)

    return check
