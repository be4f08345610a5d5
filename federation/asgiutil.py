"""The few ASGI pieces both fast paths (`federation.fastserve`, `federation.routing.asgi`) need: headers, a replayed body, a JSON answer."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from federation.bodylimit import BodyTooLarge, read_body

__all__ = ["MODERN", "Receive", "Scope", "Send", "header", "read_whole_body", "replay", "send_json"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MODERN = b"2026-07-28"
"""The protocol version whose requests are self-contained, so a middleware may answer them alone."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header `name` (lower case), or None."""
    headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == name:
            return value
    return None


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app a body already read, then the caller's own messages (its disconnect above all)."""
    sent = False

    async def replayed() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    """A whole JSON answer, compact as the SDK writes it."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def read_whole_body(scope: Scope, receive: Receive, send: Send, limit: int) -> bytes | None:
    """The request's body; None when there is nothing more to do: it grew past `limit` as it came (answered 413
    here; a declared one never gets this far: `BodyLimit`), or the caller left before sending all of it."""
    try:
        return await read_body(scope, receive, limit)
    except BodyTooLarge:
        await send_json(send, 413, {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": f"request body over {limit} bytes"}})
        return None
