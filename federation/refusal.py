"""Refusing a request before the app sees it, with a JSON-RPC error body, over HTTP or a WebSocket handshake.

The guards in front of a peer's or relay's app (Host check, rate limit) say
no the same way the mesh guard does: a status, a JSON-RPC error whose message
says what was wrong and what to do (MCP clients show it; it reads fine with
curl), and for a WebSocket the same answer as the handshake's HTTP response
where the server supports that, else a policy close (1008) with the message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.types import Scope, Send

__all__ = ["error_body", "error_message", "refuse"]

_WS_REASON_BYTES = 120
"""WebSocket close reasons are capped at 123 bytes."""


def error_body(message: str, *, code: int, data: dict[str, Any] | None = None) -> bytes:
    """A JSON-RPC error object: MCP clients show its message, and it reads fine with curl."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data:
        error["data"] = data
    return json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode("utf-8")


def error_message(body: bytes | bytearray | None) -> str:
    """The message of a JSON-RPC error body (a refusal read back by a client), or the raw text."""
    try:
        return str(json.loads(body or b"")["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return (body or b"").decode("utf-8", "replace")[:200]


async def refuse(
    scope: Scope,
    send: Send,
    status: int,
    message: str,
    *,
    code: int,
    data: dict[str, Any] | None = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answer `scope` with `status` and a JSON-RPC error `{code, message, data}` instead of running the app."""
    body = error_body(message, code=code, data=data)
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    if scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            reason = message.encode("utf-8")[:_WS_REASON_BYTES].decode("utf-8", "ignore")
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
            return
        start_type, body_type = "websocket.http.response.start", "websocket.http.response.body"
    else:
        start_type, body_type = "http.response.start", "http.response.body"
    await send({"type": start_type, "status": status, "headers": head})
    await send({"type": body_type, "body": body})
