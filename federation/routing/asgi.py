"""`FastForward`: the ASGI adapter that lets modern-era `<peer>__<tool>` calls skip the SDK.

A modern-era (2026-07-28) MCP request is self-contained (no session; the
method and tool name in headers), so a peer can tell from the headers alone
that it only forwards it. This middleware picks those requests out, checks
the body is a well-formed call, and hands it to the forwarder's message
transport; it records the call as served (as the tool host does for every
other call) and answers the caller's errors. Anything else (legacy sessions,
other methods, tools that are not remote, malformed calls) goes to the SDK
app untouched, so both paths refuse alike. A caller who hangs up mid-call has
cancelled it (in the 2026 era closing the request is the cancellation): the
forward is cut, which closes the request to the next peer in turn.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from federation.asgiutil import MODERN, Receive, Scope, header, read_whole_body, replay, send_json
from federation.errors import PeerError
from federation.identity import Identity
from federation.receipt import add_hop
from federation.routing.forwarder import Forwarder
from federation.routing.transports import Reply, Send
from federation.toolhost import CallObserver, CallOutcome, CallsInFlight, ToolAnswer, error_result, settle
from federation.trace import Trace

__all__ = ["FastForward"]

logger = logging.getLogger(__name__)

Resolve = Callable[[str], tuple[str, str] | None]
"""(peer id, tool) behind an exposed `<peer>__<tool>` name, or None when it is not a remote tool."""

_HOP_HEADERS = {b"host", b"content-length", b"connection", b"mcp-name", b"authorization", b"accept-encoding"}




class FastForward:
    """ASGI middleware in front of a node's app; forwards remote tool calls at the message level."""

    def __init__(
        self,
        app: Any,
        *,
        forwarder: Forwarder,
        resolve: Resolve,
        identity: Identity,
        calls: CallsInFlight,
        observe: CallObserver,
        max_request_bytes: int,
        mcp_path: str,
    ) -> None:
        self._app = app
        self._forwarder = forwarder
        self._resolve = resolve
        self._identity = identity
        self._calls = calls
        self._observe = observe
        self._limit = max_request_bytes
        self._path = mcp_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self._route(scope) if scope["type"] == "http" else None
        if target is None:
            await self._app(scope, receive, send)
            return
        await self._forward(*target, scope, receive, send)

    def _route(self, scope: Scope) -> tuple[str, str] | None:
        """(peer id, upstream tool) for a modern tools/call of a remote tool, else None."""
        if scope["method"] != "POST" or scope["path"] != self._path:
            return None
        if header(scope, b"mcp-method") != b"tools/call" or header(scope, b"mcp-protocol-version") != MODERN:
            return None
        name = header(scope, b"mcp-name")
        if name is None or header(scope, b"mcp-session-id") is not None:
            return None
        return self._resolve(name.decode("utf-8", "replace"))

    async def _forward(self, peer_id: str, tool: str, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_whole_body(scope, receive, send, self._limit)
        if body is None:  # answered 413, or the caller left before sending the whole request
            return
        request = _well_formed_call(body, exposed_name=header(scope, b"mcp-name"))
        if request is None:
            await self._app(scope, replay(body, receive), send)  # the SDK answers malformed requests with its own JSON-RPC error
            return
        params, request_id = request["params"], request.get("id")
        trace = Trace.from_meta(params.get("_meta") or {})
        exposed = params["name"]
        outcome = CallOutcome(tool=exposed, arguments=params.get("arguments") or {}, trace=trace, started=time.time())
        try:
            peer = self._forwarder.peer(peer_id)  # a dead peer: the error says which and when it was last seen
        except PeerError as exc:
            await self._reply_error(send, request_id, str(exc), outcome)
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP_HEADERS]
        reply = Reply(send)

        def stamp(meta: dict[str, Any]) -> dict[str, Any]:
            return add_hop(self._identity, meta, trace_id=trace.trace_id, span_id=trace.span_id, tool=exposed)

        self._observe(outcome, False)
        clock = time.perf_counter()
        with self._calls.track() as stopping:  # this peer stopping answers the caller, below
            try:
                result, left = await _unless_caller_leaves(receive, lambda: self._forwarder.relay(peer, tool, trace, request, headers, stamp, reply))
            except PeerError as exc:
                await self._end_with_error(reply, request_id, str(exc), outcome)
                return
        if stopping.cancelled_caught:  # first: a stop cancels the call before `left` is known
            await self._end_with_error(reply, request_id, self._calls.refusal or "this peer is shutting down.", outcome)
            return
        if left:
            outcome.outcome, outcome.error = "cancelled", "the caller cancelled the call (closed its request)"
            self._observe(outcome, True)
            return
        outcome.ms = (time.perf_counter() - clock) * 1000
        if result is not None:
            self._finish(outcome, result)
        else:
            outcome.outcome, outcome.error = "error", "no result in the peer's answer"
            self._observe(outcome, True)

    def _finish(self, outcome: CallOutcome, result: ToolAnswer) -> None:
        settle(outcome, result)
        self._observe(outcome, True)

    async def _end_with_error(self, reply: Reply, request_id: Any, message: str, outcome: CallOutcome) -> None:
        """End a forwarded call with `message`: as the whole answer, as its last SSE event, or (mid-JSON) only in the records."""
        if not reply.answering:
            await self._reply_error(reply.send, request_id, message, outcome)
        elif reply.sse:
            # The answer had begun as SSE: end it with an error result for this request, never a hang.
            await self._reply_error(reply.send, request_id, message, outcome, as_event=True)
        else:
            logger.info("%s", message)
            outcome.outcome, outcome.error = "error", message
            self._observe(outcome, True)

    async def _reply_error(self, send: Send, request_id: Any, message: str, outcome: CallOutcome, *, as_event: bool = False) -> None:
        """Answer the caller with a tool error: a whole JSON response, or a last SSE event if one is streaming."""
        result = error_result(message)
        self._finish(outcome, result)
        payload = {"jsonrpc": "2.0", "id": request_id, "result": result.model_dump(mode="json", by_alias=True, exclude_none=True)}
        if as_event:
            data = json.dumps(payload, separators=(",", ":")).encode()
            await send({"type": "http.response.body", "body": b"event: message\ndata: " + data + b"\n\n", "more_body": False})
        else:
            await send_json(send, 200, payload)


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


async def _unless_caller_leaves(receive: Receive, forward: Callable[[], Awaitable[ToolAnswer | None]]) -> tuple[ToolAnswer | None, bool]:
    """Run `forward`, cut short if the caller disconnects: (its result, whether the caller left)."""
    got: list[ToolAnswer | None] = []
    failure: list[PeerError] = []
    left = False
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            group.cancel_scope.cancel()

        group.start_soon(watch)
        try:
            got.append(await forward())
        except PeerError as exc:  # raised after the group, never wrapped in its exception group
            failure.append(exc)
        group.cancel_scope.cancel()
    if failure:
        raise failure[0]
    if got:  # answered: a caller who hangs up after the last byte cancelled nothing
        return got[0], False
    return None, left




