"""`Trace`: what a peer makes of a call's `_meta`, what it passes on, and the loop guard."""

from __future__ import annotations

import time
from typing import Any

import pytest

from federation.const import TRACE_META_KEY
from federation.trace import DEFAULT_DEADLINE_S, DEFAULT_MAX_HOPS, LoopError, Trace

GARBAGE: list[Any] = [
    None,
    {},
    {"other": 1},
    {TRACE_META_KEY: "a string"},
    {TRACE_META_KEY: [1, 2]},
    {TRACE_META_KEY: 7},
    {TRACE_META_KEY: {"hop": "two"}},
    {TRACE_META_KEY: {"hop": None}},
    {TRACE_META_KEY: {"deadline_s": "soon"}},
    {TRACE_META_KEY: {"visited": 5}},
]


@pytest.mark.parametrize("meta", GARBAGE)
def test_garbage_in_meta_starts_a_fresh_trace(meta: Any) -> None:
    trace = Trace.from_meta(meta)
    assert (trace.hop, trace.visited, trace.parent, trace.caller, trace.deadline_s) == (0, [], None, None, DEFAULT_DEADLINE_S)
    assert len(trace.trace_id) == len(trace.span_id) == 16
    assert Trace.from_meta(meta).trace_id != trace.trace_id, "each fresh trace has its own id"


def test_a_callers_context_is_taken_as_sent_with_the_visited_list_capped() -> None:
    sent = {"trace_id": "t1", "span_id": "s1", "parent": "p0", "hop": 2, "visited": [f"peer{i}" for i in range(100)], "caller": "peer99", "deadline_s": 12.5}
    trace = Trace.from_meta({TRACE_META_KEY: sent})
    assert (trace.trace_id, trace.span_id, trace.parent, trace.hop, trace.caller, trace.deadline_s) == ("t1", "s1", "p0", 2, "peer99", 12.5)
    assert trace.visited == [f"peer{i}" for i in range(64)]


def test_a_child_call_is_one_hop_further_under_the_same_trace() -> None:
    trace = Trace(trace_id="t1", span_id="s1", hop=1, visited=["a"], caller="a", deadline_s=30.0)
    child = Trace.from_meta(trace.child_meta("b"))
    assert (child.trace_id, child.parent, child.hop, child.visited, child.caller) == ("t1", "s1", 2, ["a", "b"], "b")
    assert child.span_id not in {"s1", trace.span_id}
    assert 0 < child.deadline_s <= 30.0, "the child gets what is left, not a fresh deadline"


def test_a_local_child_call_is_a_new_span_but_no_hop() -> None:
    trace = Trace(trace_id="t1", span_id="s1", hop=1, visited=["a"])
    child = Trace.from_meta(trace.child_meta("b", local=True))
    assert (child.trace_id, child.parent, child.hop, child.visited, child.caller) == ("t1", "s1", 1, ["a"], "b")
    child.check("b")


def test_the_remaining_deadline_counts_from_receipt_and_never_goes_below_zero_when_passed_on() -> None:
    waited = Trace(deadline_s=30.0, received_at=time.monotonic() - 10.0)
    assert waited.remaining_s() <= 20.0
    expired = Trace(deadline_s=1.0, received_at=time.monotonic() - 5.0)
    assert expired.remaining_s() < 0
    assert expired.child_meta("a")[TRACE_META_KEY]["deadline_s"] == 0.0


def test_a_call_that_already_passed_through_this_peer_is_refused_naming_the_loop() -> None:
    trace = Trace.from_meta(Trace(visited=[]).child_meta("a"))
    trace = Trace.from_meta(trace.child_meta("b"))
    with pytest.raises(LoopError, match="a -> b -> a"):
        trace.check("a")
    trace.check("c")


def test_a_call_over_the_hop_limit_is_refused() -> None:
    Trace(hop=DEFAULT_MAX_HOPS).check("x")
    with pytest.raises(LoopError, match=f"{DEFAULT_MAX_HOPS + 1} hops, over the limit of {DEFAULT_MAX_HOPS}"):
        Trace(hop=DEFAULT_MAX_HOPS + 1).check("x")
    with pytest.raises(LoopError, match="over the limit of 1"):
        Trace(hop=2).check("x", max_hops=1)
