"""The fast path for `<peer>__<tool>` calls: forward the JSON-RPC message, not the SDK stack.

A hop through the SDK (server handler -> `Client.call_tool` -> upstream)
re-runs the whole client and server machinery and costs about as much as the
call itself. A modern-era (2026-07-28) MCP request is self-contained — no
session, the method and tool name in headers — so a peer can route it by
looking at the headers alone: rewrite the tool name and the trace `_meta`,
POST it over a pooled keep-alive connection to the target peer's `/mcp`, and
stream the answer (JSON, or SSE with progress notifications) straight back.

What the SDK path does is still done, just after the bytes went out: the
loop guard before forwarding, the call events, the ledger row and the
receipt check once the answer is complete. Anything else (legacy sessions,
other methods, tools that are not remote) goes to the SDK app untouched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import httpcore
import mcp.types as types

from federation.errors import PeerError
from federation.hopstamp import ResultStamper
from federation.listen import KEEP_ALIVE_SECONDS
from federation.membership import auth_headers
from federation.receipt import add_hop
from federation.toolhost import CallOutcome
from federation.trace import LoopError, Trace

if TYPE_CHECKING:
    from federation.node import Node
    from federation.router import Router

__all__ = ["FastForward"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_MODERN = b"2026-07-28"
_HOP_HEADERS = {b"host", b"content-length", b"connection", b"mcp-name", b"authorization", b"accept-encoding"}
_CONNECT_SECONDS = 5.0
_ANSWER_HEADERS_DROPPED = {b"connection", b"keep-alive", b"content-length"}
_TRANSPORT_ERRORS = (httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class FastForward:
    """ASGI middleware in front of a node's app; forwards remote tool calls at the message level."""

    def __init__(self, app: Any, node: Node, mcp_path: str) -> None:
        self._app = app
        self._node = node
        self._path = mcp_path
        # httpcore, not httpx: the forwarding path needs a pooled keep-alive
        # connection and nothing else, and httpx's request/response models cost
        # ~0.3 ms a hop on top (measured in bench/hops.py).
        self._pool = httpcore.AsyncConnectionPool(max_connections=256, max_keepalive_connections=64, keepalive_expiry=KEEP_ALIVE_SECONDS / 2)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self._route(scope) if scope["type"] == "http" else None
        if target is None:
            await self._app(scope, receive, send)
            return
        router, peer_id, tool = target
        await self._forward(router, peer_id, tool, scope, receive, send)

    def _route(self, scope: Scope) -> tuple[Router, str, str] | None:
        """(router, peer id, upstream tool) for a modern tools/call of a remote tool, else None."""
        if scope["method"] != "POST" or scope["path"] != self._path:
            return None
        if _header(scope, b"mcp-method") != b"tools/call" or _header(scope, b"mcp-protocol-version") != _MODERN:
            return None
        name = _header(scope, b"mcp-name")
        if name is None or _header(scope, b"mcp-session-id") is not None:
            return None
        from federation.router import Router

        try:
            router = self._node.service(Router)
        except LookupError:
            return None
        hit = router.remote_tool(name.decode("utf-8", "replace"))
        return None if hit is None else (router, *hit)

    async def _forward(self, router: Router, peer_id: str, tool: str, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, self._node.settings.max_request_bytes)
        if body is None:
            await _send_json(send, 413, {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": f"request body over {self._node.settings.max_request_bytes} bytes"}})
            return
        request = _well_formed_call(body, exposed_name=_header(scope, b"mcp-name"))
        if request is None:
            await self._app(scope, _replay(body), send)  # the SDK answers malformed requests with its own JSON-RPC error
            return
        params, request_id = request["params"], request.get("id")
        meta = params.get("_meta") or {}
        trace = Trace.from_meta(meta)
        exposed = params["name"]
        outcome = CallOutcome(tool=exposed, arguments=params.get("arguments") or {}, trace=trace, started=time.time())
        try:
            trace.check(self._node.peer_id, self._node.settings.max_hops)
        except LoopError as exc:
            await self._reply_error(send, request_id, str(exc), outcome)
            return
        try:
            peer = router.peer(peer_id)  # a dead peer: the error says which and when it was last seen
        except PeerError as exc:
            await self._reply_error(send, request_id, str(exc), outcome)
            return
        child = trace.child_meta(self._node.peer_id)
        params["name"] = tool
        params["_meta"] = {**meta, **child}
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP_HEADERS]
        headers.append((b"mcp-name", tool.encode()))
        headers.extend((k.lower().encode(), v.encode()) for k, v in auth_headers(self._node.settings).items())
        self._node.observe_call(outcome, finished=False)
        router.outstanding[peer_id] += 1
        clock = time.perf_counter()
        received = bytearray()
        payload = json.dumps(request, separators=(",", ":")).encode()
        headers += [(b"host", urlsplit(peer.url).netloc.encode()), (b"content-length", str(len(payload)).encode())]
        remaining = max(0.1, trace.remaining_s())
        # A call waiting for a pooled connection is queued work, not a failure: it may wait as long as the caller does.
        timeouts = {"connect": _CONNECT_SECONDS, "read": remaining, "write": _CONNECT_SECONDS, "pool": remaining}
        content_type, answering = "", False
        with self._node.tools.calls.track() as stopping:  # this peer stopping answers the caller, below
            try:
                async with self._pool.stream("POST", peer.url, headers=headers, content=payload, extensions={"timeout": timeouts}) as response:
                    content_type = next((v.decode() for k, v in response.headers if k.lower() == b"content-type"), "")
                    stamper = ResultStamper(lambda meta: add_hop(self._node.identity, meta, trace_id=trace.trace_id, span_id=trace.span_id, tool=exposed), sse=content_type.startswith("text/event-stream"))
                    start = {"type": "http.response.start", "status": response.status, "headers": [(k, v) for k, v in response.headers if k.lower() not in _ANSWER_HEADERS_DROPPED]}
                    if content_type.startswith("text/event-stream"):  # progress streams on as it comes
                        await send(start)
                        answering = True
                    async for chunk in response.aiter_stream():
                        received += chunk
                        if out := stamper.feed(chunk):
                            await send({"type": "http.response.body", "body": out, "more_body": True})
                    tail = stamper.finish()
                    if not answering:  # one JSON message: its length changed with the hop record
                        start["headers"].append((b"content-length", str(len(tail)).encode()))
                        await send(start)
                        answering = True
                await send({"type": "http.response.body", "body": tail, "more_body": False})
            except _TRANSPORT_ERRORS as exc:
                if isinstance(exc, httpcore.PoolTimeout):
                    message = f"this peer had no free connection to {peer.name} ({peer.id}) for {tool} within the caller's deadline ({remaining:.1f} s); it is overloaded, retry later"
                elif isinstance(exc, httpcore.TimeoutException):
                    message = f"peer {peer.name} ({peer.id}) did not answer {tool} within {remaining:.1f} s (the caller's deadline)"
                else:
                    router.lost(peer)
                    message = f"peer {peer.name} ({peer.id}) is unreachable or stopped answering during {tool}: {exc!r}"
                await self._end_with_error(send, request_id, message, outcome, answering=answering, content_type=content_type)
                return
            finally:
                router.outstanding[peer_id] -= 1
        if stopping.cancelled_caught:
            message = self._node.tools.calls.refusal or "this peer is shutting down."
            await self._end_with_error(send, request_id, message, outcome, answering=answering, content_type=content_type)
            return
        outcome.ms = (time.perf_counter() - clock) * 1000
        result = _final_result(bytes(received), content_type)
        if result is not None:
            router.record_made(peer, tool, child, result, outcome.started, outcome.ms)
            self._node.observe_result(outcome, result)
        else:
            outcome.outcome, outcome.error = "error", "no result in the peer's answer"
            self._node.observe_call(outcome, finished=True)

    async def _end_with_error(self, send: Send, request_id: Any, message: str, outcome: CallOutcome, *, answering: bool, content_type: str) -> None:
        """End a forwarded call with `message`: as the whole answer, as its last SSE event, or (mid-JSON) only in the records."""
        if not answering:
            await self._reply_error(send, request_id, message, outcome)
        elif content_type.startswith("text/event-stream"):
            # The answer had begun as SSE: end it with an error result for this request, never a hang.
            await self._reply_error(send, request_id, message, outcome, as_event=True)
        else:
            logger.info("%s", message)
            outcome.outcome, outcome.error = "error", message
            self._node.observe_call(outcome, finished=True)

    async def _reply_error(self, send: Send, request_id: Any, message: str, outcome: CallOutcome, *, as_event: bool = False) -> None:
        """Answer the caller with a tool error: a whole JSON response, or a last SSE event if one is streaming."""
        result = types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)
        self._node.observe_result(outcome, result)
        payload = {"jsonrpc": "2.0", "id": request_id, "result": result.model_dump(mode="json", by_alias=True, exclude_none=True)}
        if as_event:
            data = json.dumps(payload, separators=(",", ":")).encode()
            await send({"type": "http.response.body", "body": b"event: message\ndata: " + data + b"\n\n", "more_body": False})
        else:
            await _send_json(send, 200, payload)


def _well_formed_call(body: bytes, *, exposed_name: bytes | None) -> dict[str, Any] | None:
    """The request if it is a tools/call the fast path may forward as is, else None.

    Forwarded only when `params` is an object whose `name` is the tool the
    `mcp-name` header names, with object `arguments` and `_meta` (or none):
    everything else is the SDK's to refuse, so both paths answer alike.
    """
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if not isinstance(request, dict) or request.get("method") != "tools/call":
        return None
    params = request.get("params")
    if not isinstance(params, dict) or exposed_name is None or params.get("name") != exposed_name.decode("utf-8", "replace"):
        return None
    if not isinstance(params.get("arguments", {}), dict) or not isinstance(params.get("_meta", {}), dict):
        return None
    return request


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body"):
            return bytes(body)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent:
            await anyio.sleep_forever()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _final_result(raw: bytes, content_type: str) -> types.CallToolResult | None:
    """The JSON-RPC result in a JSON body, or in the last `data:` line of an SSE body."""
    try:
        if content_type.startswith("text/event-stream"):
            lines = [line for line in raw.decode("utf-8", "replace").splitlines() if line.startswith("data:")]
            messages = [json.loads(line[5:]) for line in lines]
            message = next((m for m in reversed(messages) if "result" in m or "error" in m), None)
        else:
            message = json.loads(raw)
        if not isinstance(message, dict) or "result" not in message:
            return None
        return types.CallToolResult.model_validate(message["result"])
    except ValueError:
        return None

