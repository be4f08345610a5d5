"""Signed receipts: the callee's statement of what it did for a call.

The peer that served a call signs `{trace_id, span_id, tool, tokens_in,
tokens_out, result_digest, peer}` with its identity key and returns it in the
result's `_meta` under `RECEIPT_META_KEY`. The caller checks it against the
callee's card key and stores it; anyone can re-check it later
(`mcpfed ledger verify`). Traceability without a blockchain.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import mcp.types as types

from federation.identity import Identity, peer_id_for, verify_signature

__all__ = ["RECEIPT_META_KEY", "result_digest", "sign_receipt", "verify_receipt"]

RECEIPT_META_KEY = "mcpfed/receipt"


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def result_digest(result: types.CallToolResult) -> str:
    """sha256 of what the caller sees: content and structured content, not `_meta`."""
    body = result.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"meta"})
    return hashlib.sha256(_canonical(body)).hexdigest()


def sign_receipt(identity: Identity, *, trace_id: str, span_id: str, tool: str, tokens_in: int, tokens_out: int, result: types.CallToolResult) -> dict[str, Any]:
    claim = {
        "trace_id": trace_id,
        "span_id": span_id,
        "tool": tool,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "result_digest": result_digest(result),
        "peer": identity.peer_id,
        "pubkey": base64.b64encode(identity.public_key).decode("ascii"),
    }
    signature = identity.sign(_canonical(claim))
    return claim | {"sig": base64.b64encode(signature).decode("ascii")}


def verify_receipt(receipt: dict[str, Any], *, result: types.CallToolResult | None = None, expected_peer: str | None = None) -> str | None:
    """None when the receipt holds; otherwise why it does not."""
    try:
        claim = {k: v for k, v in receipt.items() if k != "sig"}
        public_key = base64.b64decode(claim["pubkey"], validate=True)
        signature = base64.b64decode(receipt["sig"], validate=True)
    except (KeyError, TypeError, ValueError):
        return "malformed receipt"
    if peer_id_for(public_key) != claim.get("peer"):
        return "receipt key does not match its peer id"
    if expected_peer is not None and claim.get("peer") != expected_peer:
        return f"receipt is signed by {claim.get('peer')}, not the peer called ({expected_peer})"
    if not verify_signature(public_key, signature, _canonical(claim)):
        return "bad receipt signature"
    if result is not None and claim.get("result_digest") != result_digest(result):
        return "receipt does not match the result received"
    return None
