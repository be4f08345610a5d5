"""Signed receipts: the callee's statement of what it did for a call.

The peer that served a call signs `{trace_id, span_id, tool, tokens_in,
tokens_out, result_digest, peer}` with its identity key and returns it in the
result's `_meta` under `RECEIPT_META_KEY`. The caller checks it against the
callee's card key and stores it; anyone can re-check it later
(`mcpfed ledger verify`). Traceability without a blockchain.

A call forwarded through other peers (A -> B -> C) keeps C's receipt as it
is: B never replaces it. Each forwarding peer adds a signed *hop record*
beside it (`HOPS_META_KEY`: `{peer, forwarded_to, trace_id, span_id, tool,
result_digest}`), so A, which called B, can check that B handed the call to
C and that C's receipt is for the very result A received. `served_by` walks
that chain.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import mcp.types as types

from federation.identity import Identity, b64decode_exact, peer_id_for, verify_signature

__all__ = [
    "HOPS_META_KEY",
    "RECEIPT_META_KEY",
    "add_hop",
    "canonical_json",
    "check_stored",
    "ledger_fields",
    "result_digest",
    "served_by",
    "sign_receipt",
    "verify_receipt",
]

RECEIPT_META_KEY = "mcpfed/receipt"
HOPS_META_KEY = "mcpfed/hops"
_MAX_HOPS_KEPT = 16


def canonical_json(data: Any) -> bytes:
    """The bytes that are hashed and signed: sorted keys, no whitespace, UTF-8 (as the MCP audit-record draft)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def result_digest(result: types.CallToolResult) -> str:
    """sha256 of what the caller sees: content and structured content, not `_meta`."""
    body = result.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"meta"})
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _signed(identity: Identity, claim: dict[str, Any]) -> dict[str, Any]:
    claim = claim | {"peer": identity.peer_id, "pubkey": base64.b64encode(identity.public_key).decode("ascii")}
    return claim | {"sig": base64.b64encode(identity.sign(canonical_json(claim))).decode("ascii")}


def _check_signed(record: dict[str, Any]) -> str | None:
    """None when `record` is signed by the key of the peer it names."""
    try:
        claim = {k: v for k, v in record.items() if k != "sig"}
        public_key = b64decode_exact(claim["pubkey"])
        signature = b64decode_exact(record["sig"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return "malformed receipt"
    if peer_id_for(public_key) != claim.get("peer"):
        return "receipt key does not match its peer id"
    if not verify_signature(public_key, signature, canonical_json(claim)):
        return "bad receipt signature"
    return None


def sign_receipt(identity: Identity, *, trace_id: str, span_id: str, tool: str, tokens_in: int, tokens_out: int, result: types.CallToolResult) -> dict[str, Any]:
    return _signed(identity, {
        "trace_id": trace_id,
        "span_id": span_id,
        "tool": tool,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "result_digest": result_digest(result),
    })


def verify_receipt(receipt: dict[str, Any], *, result: types.CallToolResult | None = None, expected_peer: str | None = None) -> str | None:
    """None when the receipt holds; otherwise why it does not."""
    if problem := _check_signed(receipt):
        return problem
    if expected_peer is not None and receipt.get("peer") != expected_peer:
        return f"receipt is signed by {receipt.get('peer')}, not the peer called ({expected_peer})"
    if result is not None and receipt.get("result_digest") != result_digest(result):
        return "receipt does not match the result received"
    return None


def _hop_records(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The hop records in `meta`: the dicts of its list; anything else a peer put there is ignored, not trusted."""
    hops = meta.get(HOPS_META_KEY)
    return [h for h in hops if isinstance(h, dict)] if isinstance(hops, list) else []


def add_hop(identity: Identity, meta: dict[str, Any], *, trace_id: str, span_id: str, tool: str) -> dict[str, Any]:
    """`meta` of a result this peer forwarded, with its own signed hop record added beside the receipt.

    The hop names the peer it handed the call to: the one whose hop record
    was added last, or the receipt's signer when the call went straight there.
    """
    receipt = meta[RECEIPT_META_KEY]
    hops = _hop_records(meta)[-_MAX_HOPS_KEPT:]
    forwarded_to = hops[-1].get("peer") if hops else receipt.get("peer")
    hop = _signed(identity, {"trace_id": trace_id, "span_id": span_id, "tool": tool, "forwarded_to": forwarded_to, "result_digest": receipt.get("result_digest")})
    return {**meta, HOPS_META_KEY: [*hops, hop]}


def served_by(meta: dict[str, Any], result: types.CallToolResult, called: str) -> tuple[str | None, str | None]:
    """(id of the peer that served, None) when the receipt in `meta` holds for a call made to `called`; else (None, why).

    The receipt must be signed by `called`, or the hop records must lead from
    `called` to its signer, each signed and for the same result.
    """
    receipt = meta.get(RECEIPT_META_KEY)
    if not isinstance(receipt, dict):
        return None, "no receipt"
    if problem := verify_receipt(receipt, result=result):
        return None, problem
    return _walk_hops(receipt, _hop_records(meta), called)


def _walk_hops(receipt: dict[str, Any], hops: list[dict[str, Any]], called: str) -> tuple[str | None, str | None]:
    """Follow the hop records from `called` to the receipt's signer, checking each: (signer, None) or (None, why)."""
    by_peer = {h["peer"]: h for h in hops if isinstance(h.get("peer"), str)}
    at: Any = called
    steps = 0
    while at != receipt.get("peer"):
        hop = by_peer.get(at) if isinstance(at, str) else None
        if hop is None or steps > _MAX_HOPS_KEPT:
            return None, f"receipt is signed by {receipt.get('peer')}, not the peer called ({called}), and no hop record links them"
        if problem := _check_signed(hop):
            return None, f"hop record of {at}: {problem}"
        if hop.get("result_digest") != receipt.get("result_digest"):
            return None, f"hop record of {at} is for another result"
        at, steps = hop.get("forwarded_to"), steps + 1
    return str(at), None


def ledger_fields(meta: dict[str, Any], result: types.CallToolResult, called: str) -> dict[str, Any]:
    """The ledger columns of a call made to `called` whose result carried `meta`: the whole receipt chain and its verdict.

    Kept whole (the callee's receipt and every forwarding peer's hop record)
    so that anyone can re-check it later without the result: `check_stored`.
    A receipt that holds credits the peer that served (`callee`), which a
    forwarded call's hop records name.
    """
    receipt = meta.get(RECEIPT_META_KEY)
    if not isinstance(receipt, dict):
        return {}
    server, problem = served_by(meta, result, called)
    hops = _hop_records(meta)
    fields: dict[str, Any] = {"receipt": json.dumps(receipt), "hops": json.dumps(hops) if hops else None}
    return fields | {"receipt_ok": problem is None, "receipt_problem": problem} | ({"callee": server} if server else {})


def check_stored(receipt: dict[str, Any], hops: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str | None]:
    """Re-check a stored receipt chain without the result: (the record of the peer that was called, None) or (None, why).

    The peer called is the one whose hop record was added last (or the
    receipt's signer when there are none); every signature on the way must
    hold and every hop must be for the receipt's result.
    """
    if problem := verify_receipt(receipt):
        return None, problem
    first = hops[-1] if hops else receipt
    _, problem = _walk_hops(receipt, hops, str(first.get("peer")))
    return (None, problem) if problem else (first, None)
