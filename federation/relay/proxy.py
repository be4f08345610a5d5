"""`<relay>/p/<peer id>/<path>`: an HTTP request forwarded over the peer's tunnel.

Raw ASGI, so the response streams as the peer produces it (SSE progress
included) and the relay adds little per request. The request body is read
whole (up to the tunnel's `max_request_bytes`; MCP requests are small JSON)
and travels in one OPEN frame. Errors the relay makes itself are JSON-RPC
error bodies, so MCP clients show their message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.types import Receive, Scope, Send

from federation.bodylimit import BodyTooLarge, read_body
from federation.refusal import error_body
from federation.relay.frames import RequestHead, Reset, ResponseHead
from federation.relay.tunnel import End, RelayedStream, Tunnel, TunnelClosed, TunnelFull

__all__ = ["forward", "send_error"]

logger = logging.getLogger(__name__)

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "host"})
_RELAY_ERROR_CODE = -32042
"""JSON-RPC error code of errors the relay itself answers (unknown peer, limits, tunnel lost)."""

Lookup = Callable[[str], Awaitable[Tunnel | str]]
"""peer id -> its tunnel here, or a message saying why there is none."""


async def send_error(send: Send, status: int, message: str, **data: Any) -> None:
    body = error_body(message, code=_RELAY_ERROR_CODE, data=data or None)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _request_head(scope: Scope, path: str) -> RequestHead:
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k.decode("latin-1") not in _HOP_BY_HOP]
    if client := scope.get("client"):
        headers.append(("x-forwarded-for", str(client[0])))
    return RequestHead(method=scope["method"], path=path, query=scope.get("query_string", b"").decode("latin-1"), headers=headers)


def _response_headers(head: ResponseHead) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in head.headers if k.lower() not in _HOP_BY_HOP]


async def forward(scope: Scope, receive: Receive, send: Send, peer_id: str, path: str, lookup: Lookup) -> None:
    """Serve one request for `peer_id` through its tunnel."""
    found = await lookup(peer_id)
    if isinstance(found, str):
        await send_error(send, 404, found, peer=peer_id)
        return
    tunnel = found
    limit = tunnel.limits.max_request_bytes
    try:
        body = await read_body(scope, receive, limit)
    except BodyTooLarge:
        await send_error(send, 413, f"request body exceeds the relay's limit of {limit} bytes (max_request_bytes) for peer {peer_id}", limit=limit)
        return
    if body is None:
        return
    try:
        stream = await tunnel.open(_request_head(scope, path), body)
    except TunnelFull as exc:
        await send_error(send, 503, str(exc), limit=tunnel.limits.max_streams)
        return
    except TunnelClosed as exc:
        await send_error(send, 502, f"peer {peer_id} cannot be reached through this relay: {exc}")
        return
    await _relay_response(stream, receive, send)


async def _relay_response(stream: RelayedStream, receive: Receive, send: Send) -> None:
    """Stream the peer's answer to the client; a client that leaves resets the stream on the peer."""
    tunnel = stream.tunnel
    completed = False
    try:
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch_disconnect)
            completed = await _pump(stream, send)
            group.cancel_scope.cancel()
    finally:
        if completed:
            tunnel.forget(stream)
        else:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await tunnel.reset(stream, "the HTTP client went away or the relay gave up on the response")


async def _pump(stream: RelayedStream, send: Send) -> bool:
    """Copy HEAD/DATA/END to the client, granting credit as it reads; False if the response broke off."""
    first = await stream.next()
    if isinstance(first, Reset):
        await send_error(send, 502, f"the request to peer {stream.tunnel.peer_id} did not complete: {first.message}")
        return True
    if not isinstance(first, ResponseHead):
        await send_error(send, 502, f"peer {stream.tunnel.peer_id} sent a body before its response head")
        return True
    await send({"type": "http.response.start", "status": first.status, "headers": _response_headers(first)})
    consumed = 0
    half_window = stream.tunnel.limits.window // 2
    while True:
        event = await stream.next()
        if isinstance(event, bytes):
            await send({"type": "http.response.body", "body": event, "more_body": True})
            consumed += len(event)
            if consumed >= half_window:
                try:
                    await stream.acknowledge(consumed)
                except TunnelClosed:
                    return False
                consumed = 0
        elif isinstance(event, End):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return True
        else:  # Reset after the head: the response cannot be completed; closing the connection tells the client
            logger.warning("relayed response from %s broke off: %s", stream.tunnel.peer_id, getattr(event, "message", event))
            return False
