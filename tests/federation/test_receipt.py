"""Receipts: the callee's signed statement, checked field by field, and the hop records that chain it back to the peer called."""

from __future__ import annotations

import base64
from typing import Any

import mcp.types as types
import pytest

from federation.identity import Identity
from federation.receipt import HOPS_META_KEY, RECEIPT_META_KEY, add_hop, served_by, sign_receipt, verify_receipt

A, B, C, MALLORY = (Identity.generate() for _ in range(4))
RESULT = types.CallToolResult(content=[types.TextContent(type="text", text="four")], structured_content={"answer": 4})
OTHER_RESULT = types.CallToolResult(content=[types.TextContent(type="text", text="five")], structured_content={"answer": 5})


def receipt_by(identity: Identity, result: types.CallToolResult = RESULT) -> dict[str, Any]:
    return sign_receipt(identity, trace_id="t1", span_id="s1", tool="add", tokens_in=3, tokens_out=1, result=result)


def forwarded(meta: dict[str, Any], *via: Identity) -> dict[str, Any]:
    """`meta` as it comes back through `via` (nearest the callee first), each adding its hop record."""
    for identity in via:
        meta = add_hop(identity, meta, trace_id="t1", span_id=f"span-{identity.peer_id[:4]}", tool="c__add")
    return meta


def test_a_receipt_holds_for_its_result_and_signer() -> None:
    assert verify_receipt(receipt_by(C), result=RESULT, expected_peer=C.peer_id) is None
    assert verify_receipt(receipt_by(C)) is None


def test_a_receipt_for_another_result_or_from_another_peer_is_refused() -> None:
    assert verify_receipt(receipt_by(C), result=OTHER_RESULT) == "receipt does not match the result received"
    assert verify_receipt(receipt_by(C), expected_peer=B.peer_id) == f"receipt is signed by {C.peer_id}, not the peer called ({B.peer_id})"


@pytest.mark.parametrize("field", ["trace_id", "span_id", "tool", "tokens_in", "tokens_out", "result_digest"])
def test_changing_any_signed_field_breaks_the_signature(field: str) -> None:
    receipt = receipt_by(C)
    value = receipt[field]
    receipt[field] = value + 1 if isinstance(value, int) else value + "x"
    assert verify_receipt(receipt) == "bad receipt signature"


def test_a_receipt_claiming_another_peer_or_key_is_refused() -> None:
    claims_b = receipt_by(C) | {"peer": B.peer_id}
    assert verify_receipt(claims_b) == "receipt key does not match its peer id"
    swapped_key = receipt_by(C) | {"pubkey": base64.b64encode(B.public_key).decode()}
    assert verify_receipt(swapped_key) == "receipt key does not match its peer id"
    resigned = receipt_by(C) | {"sig": receipt_by(MALLORY)["sig"]}
    assert verify_receipt(resigned) == "bad receipt signature"


@pytest.mark.parametrize(
    "broken",
    [
        {"sig": "not base64!"},
        {"pubkey": "not base64!"},
        {"sig": None},
        {"pubkey": 42},
    ],
)
def test_a_malformed_receipt_is_refused_as_such(broken: dict[str, Any]) -> None:
    assert verify_receipt(receipt_by(C) | broken) == "malformed receipt"


def test_a_receipt_without_a_signature_is_malformed() -> None:
    receipt = receipt_by(C)
    del receipt["sig"]
    assert verify_receipt(receipt) == "malformed receipt"


def test_a_direct_call_is_served_by_the_peer_called() -> None:
    assert served_by({RECEIPT_META_KEY: receipt_by(C)}, RESULT, called=C.peer_id) == (C.peer_id, None)


def test_forwarding_keeps_the_callees_receipt_and_adds_a_hop_beside_it() -> None:
    receipt = receipt_by(C)
    meta = forwarded({RECEIPT_META_KEY: receipt}, B)
    assert meta[RECEIPT_META_KEY] == receipt, "the forwarder never replaces the receipt"
    (hop,) = meta[HOPS_META_KEY]
    assert (hop["peer"], hop["forwarded_to"], hop["result_digest"]) == (B.peer_id, C.peer_id, receipt["result_digest"])


def test_hop_records_chain_the_receipt_back_over_one_and_two_hops() -> None:
    one_hop = forwarded({RECEIPT_META_KEY: receipt_by(C)}, B)
    assert served_by(one_hop, RESULT, called=B.peer_id) == (C.peer_id, None)
    two_hops = forwarded({RECEIPT_META_KEY: receipt_by(C)}, B, A)
    assert [hop["forwarded_to"] for hop in two_hops[HOPS_META_KEY]] == [C.peer_id, B.peer_id]
    assert served_by(two_hops, RESULT, called=A.peer_id) == (C.peer_id, None)
    assert served_by(two_hops, RESULT, called=B.peer_id) == (C.peer_id, None), "the middle peer's caller sees the same chain"


def test_no_receipt_or_a_receipt_for_another_result_serves_nobody() -> None:
    assert served_by({}, RESULT, called=B.peer_id) == (None, "no receipt")
    assert served_by({RECEIPT_META_KEY: "signed, honest"}, RESULT, called=B.peer_id) == (None, "no receipt")
    meta = forwarded({RECEIPT_META_KEY: receipt_by(C)}, B)
    assert served_by(meta, OTHER_RESULT, called=B.peer_id) == (None, "receipt does not match the result received")


def test_a_receipt_from_a_peer_not_called_and_not_linked_is_refused() -> None:
    served, why = served_by({RECEIPT_META_KEY: receipt_by(C)}, RESULT, called=B.peer_id)
    assert served is None and why == f"receipt is signed by {C.peer_id}, not the peer called ({B.peer_id}), and no hop record links them"


def test_a_broken_chain_is_refused() -> None:
    two_hops = forwarded({RECEIPT_META_KEY: receipt_by(C)}, B, A)
    without_b = two_hops | {HOPS_META_KEY: [h for h in two_hops[HOPS_META_KEY] if h["peer"] != B.peer_id]}
    served, why = served_by(without_b, RESULT, called=A.peer_id)
    assert served is None and why is not None and "no hop record links them" in why


def test_a_forged_hop_record_is_refused() -> None:
    """Mallory, holding C's receipt, claims B forwarded to C: she cannot sign as B."""
    forged = forwarded({RECEIPT_META_KEY: receipt_by(C)}, MALLORY)
    (hop,) = forged[HOPS_META_KEY]
    as_b = forged | {HOPS_META_KEY: [hop | {"peer": B.peer_id}]}
    assert served_by(as_b, RESULT, called=B.peer_id) == (None, f"hop record of {B.peer_id}: receipt key does not match its peer id")
    honest = forwarded({RECEIPT_META_KEY: receipt_by(C)}, B)
    (b_hop,) = honest[HOPS_META_KEY]
    redirected = honest | {HOPS_META_KEY: [b_hop | {"forwarded_to": MALLORY.peer_id}]}
    assert served_by(redirected, RESULT, called=B.peer_id) == (None, f"hop record of {B.peer_id}: bad receipt signature")


def test_a_hop_record_for_another_result_is_refused() -> None:
    elsewhere = forwarded({RECEIPT_META_KEY: receipt_by(C, OTHER_RESULT)}, B)
    spliced = {RECEIPT_META_KEY: receipt_by(C), HOPS_META_KEY: elsewhere[HOPS_META_KEY]}
    assert served_by(spliced, RESULT, called=B.peer_id) == (None, f"hop record of {B.peer_id} is for another result")
