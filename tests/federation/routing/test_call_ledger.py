"""`CallLedger` alone: a served and a made call each leave one `call_finished` event and one row, from the same fields."""

from __future__ import annotations

import time
from pathlib import Path

import mcp.types as types
import pytest

from federation.card import PeerCard, sign_card
from federation.contract import CallFinished
from federation.events import EventBus
from federation.identity import Identity
from federation.peers import Peer
from federation.receipt import RECEIPT_META_KEY, sign_receipt
from federation.routing.ledger import CallLedger
from federation.store import Store, database_url
from federation.toolhost import CallOutcome
from federation.trace import Trace

pytestmark = pytest.mark.anyio

ME = Identity.generate()
CALLEE = Identity.generate()


def _peer(identity: Identity, name: str) -> Peer:
    return Peer(card=sign_card(PeerCard(id="", name=name, pubkey=""), identity), routes={"static": "http://127.0.0.1:9/mcp"})


async def test_a_served_call_leaves_an_event_and_a_row_that_agree(tmp_path: Path) -> None:
    events = EventBus()
    async with Store(database_url(tmp_path), ME) as store, events.subscribe("call_finished") as finished:
        ledger = CallLedger(store=store, events=events, peer_id=ME.peer_id)
        trace = Trace(parent="p1", caller="someone")
        ledger.served(CallOutcome(tool="echo", arguments={}, trace=trace, started=time.time(), ms=1.23456, outcome="error", error="bad", tokens_in=2, tokens_out=5))
        event = (await anext(finished)).payload
        await store.flush()
        (row,) = store.calls()
    assert isinstance(event, CallFinished)
    assert (row.role, row.trace_id, row.span_id, row.parent_span, row.caller, row.callee) == ("served", trace.trace_id, trace.span_id, "p1", "someone", ME.peer_id)
    assert (event.trace_id, event.span_id, event.parent, event.caller, event.callee) == (row.trace_id, row.span_id, row.parent_span, row.caller, row.callee)
    assert (row.tool, row.outcome, row.error, row.tokens_in, row.tokens_out) == ("echo", "error", "bad", 2, 5)
    assert (event.tool, event.outcome, event.error, event.tokens_in, event.tokens_out) == ("echo", "error", "bad", 2, 5)


@pytest.mark.parametrize("honest", [True, False])
async def test_a_made_call_checks_the_callees_receipt_and_credits_its_signer(tmp_path: Path, honest: bool) -> None:
    events = EventBus()
    callee = _peer(CALLEE, "srv")
    meta = Trace().child_meta(ME.peer_id)
    span = next(iter(meta.values()))
    result = types.CallToolResult(content=[types.TextContent(type="text", text="hi")])
    signed_for = result if honest else types.CallToolResult(content=[types.TextContent(type="text", text="something else")])
    receipt = sign_receipt(CALLEE, trace_id=span["trace_id"], span_id=span["span_id"], tool="echo", tokens_in=3, tokens_out=4, result=signed_for)
    result = result.model_copy(update={"meta": {RECEIPT_META_KEY: receipt}})
    async with Store(database_url(tmp_path), ME) as store, events.subscribe("call_finished") as finished:
        CallLedger(store=store, events=events, peer_id=ME.peer_id).made(callee, "echo", meta, result, time.time(), 2.0)
        event = (await anext(finished)).payload
        await store.flush()
        (row,) = store.calls()
    assert isinstance(event, CallFinished)
    assert (row.role, row.caller, row.callee, row.trace_id, row.span_id) == ("made", ME.peer_id, CALLEE.peer_id, span["trace_id"], span["span_id"])
    assert (event.caller, event.callee, event.trace_id, event.span_id, event.tokens_out) == (ME.peer_id, CALLEE.peer_id, span["trace_id"], span["span_id"], 4)
    assert row.receipt_ok is honest
    assert (row.receipt_problem is None) is honest
