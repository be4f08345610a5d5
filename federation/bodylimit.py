"""Refusing an oversized MCP request with an error an MCP client can show.

The SDK answers a body over its limit with a plain-text 413, which the SDK's
own client reports only as "Server returned an error response": the caller
never learns what was wrong. This ASGI layer answers the same 413 before the
body is read, with a JSON-RPC error saying how big the request was and what
the limit is; clients surface that message. (A body sent without
Content-Length is still capped by the SDK.)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mcp.types import INVALID_REQUEST

__all__ = ["BodyLimit", "BodyTooLarge", "read_body"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: POSTs to `path` declaring more than `limit` bytes get a JSON-RPC 413."""

    def __init__(self, app: Any, *, limit: int, path: str) -> None:
        self._app = app
        self._limit = limit
        self._path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = _declared_size(scope) if scope["type"] == "http" and scope["path"] == self._path else None
        if size is None or size <= self._limit:
            await self._app(scope, receive, send)
            return
        message = (
            f"request body is {size} bytes, over this peer's limit of {self._limit} bytes; "
            "send less (e.g. a shorter prompt), or raise the limit with MCPFED_MAX_REQUEST_BYTES on the peer."
        )
        body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """A request body (declared or as received) over the limit."""


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole request body for those who must see it before passing it on (the fast path, the relay).

    None if the client left before sending all of it; `BodyTooLarge` past
    `limit`, as soon as the declared length or the bytes received say so.
    """
    declared = _declared_size(scope)
    if declared is not None and declared > limit:
        raise BodyTooLarge
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def _declared_size(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
