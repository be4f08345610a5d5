"""The few ASGI pieces both fast paths (`federation.fastserve`, `federation.routing.asgi`) need: headers, a replayed body, a JSON answer."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import anyio

__all__ = ["MODERN", "Receive", "Scope", "Send", "header", "replay", "send_json"]

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


def replay(body: bytes) -> Receive:
    """A `receive` that hands the app a body already read, then waits (as for a caller who stays)."""
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent:
            await anyio.sleep_forever()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    """A whole JSON answer, compact as the SDK writes it."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
