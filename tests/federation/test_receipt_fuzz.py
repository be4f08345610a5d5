"""Receipts and hop records come back in a peer's `_meta`: any value there gives a verdict (None or why), never an exception."""

from __future__ import annotations

from typing import Any

import mcp.types as types
from hypothesis import given
from hypothesis import strategies as st

from federation.identity import Identity
from federation.receipt import HOPS_META_KEY, RECEIPT_META_KEY, add_hop, served_by, sign_receipt, verify_receipt
from tests.support.fuzzing import FUZZ, JSON, peak_bytes

A, B, C = (Identity.generate() for _ in range(3))
RESULT = types.CallToolResult(content=[types.TextContent(type="text", text="four")])
RECEIPT = sign_receipt(C, trace_id="t1", span_id="s1", tool="add", tokens_in=3, tokens_out=1, result=RESULT)
FORWARDED = add_hop(B, {RECEIPT_META_KEY: RECEIPT}, trace_id="t1", span_id="s2", tool="c__add")
RECORD_FIELDS = ["peer", "pubkey", "sig", "forwarded_to", "result_digest", "trace_id", "tool"]

RECORD = st.dictionaries(st.sampled_from(RECORD_FIELDS) | st.text(max_size=8), JSON, max_size=6)
"""A dict shaped like a receipt or hop record, with any JSON values."""
PEER_IDS = st.sampled_from([A.peer_id, B.peer_id, C.peer_id])
ANY_PEER = PEER_IDS | JSON


def _verdict(outcome: tuple[str | None, str | None]) -> None:
    served, why = outcome
    assert (served is None) != (why is None)
    assert why is None or why


@FUZZ
@given(receipt=RECORD | st.builds(lambda changes: RECEIPT | changes, RECORD))
def test_any_receipt_is_held_or_refused_with_a_reason(receipt: dict[str, Any]) -> None:
    problem = verify_receipt(receipt, result=RESULT, expected_peer=C.peer_id)
    assert problem is None or isinstance(problem, str)


@FUZZ
@given(receipt=st.just(RECEIPT) | JSON | RECORD, hops=JSON | st.lists(RECORD | JSON, max_size=4), called=PEER_IDS)
def test_any_meta_gives_served_by_a_verdict_and_takes_a_hop(receipt: Any, hops: Any, called: str) -> None:
    meta = {RECEIPT_META_KEY: receipt, HOPS_META_KEY: hops}
    _verdict(served_by(meta, RESULT, called))
    if isinstance(receipt, dict):  # what a forwarding peer does with a result passing through it
        assert add_hop(A, meta, trace_id="t1", span_id="s3", tool="b__add")[HOPS_META_KEY][-1]["peer"] == A.peer_id


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(RECORD_FIELDS), ANY_PEER), min_size=1, max_size=3), called=PEER_IDS)
def test_a_forwarded_result_with_its_hop_record_altered_gives_a_verdict(changes: list[tuple[str, Any]], called: str) -> None:
    hop = dict(FORWARDED[HOPS_META_KEY][0])
    for field, value in changes:
        hop[field] = value
    _verdict(served_by({**FORWARDED, HOPS_META_KEY: [hop]}, RESULT, called))


def test_a_chain_of_hop_records_is_walked_in_bounded_memory() -> None:
    """A megabyte of hop records (far more than any peer keeps) costs a bounded multiple of its size to check."""
    meta = {RECEIPT_META_KEY: RECEIPT, HOPS_META_KEY: [dict(FORWARDED[HOPS_META_KEY][0], peer=f"p{i}") for i in range(4000)]}
    assert peak_bytes(lambda: served_by(meta, RESULT, A.peer_id)) < 8 << 20
