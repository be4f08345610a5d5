"""The two ways a forwarded call travels to its peer, behind one seam (`Delivery`).

- `MessageTransport`: a modern-era (2026-07-28) request is self-contained, so
  the JSON-RPC message itself is rewritten (tool name, trace `_meta`) and
  POSTed over a pooled keep-alive connection; the answer (JSON, or SSE with
  progress) streams straight back to the caller, stamped with this peer's
  hop record (`federation.hopstamp`). A hop through the SDK would re-run the
  whole client and server machinery and cost about as much as the call.
- `SessionTransport`: a `tools/call` over the peer's pooled SDK session,
  for callers that are not an HTTP request to pass through (legacy sessions,
  the gateway, `mesh_call`, `Mesh.call`). A round that asks for the user's
  input (`input_required`) comes back to the caller as it is, and the retry
  carries the answers (`federation.routing.elicitation` decides what to do
  with it).

A delivery raises `TransportFailure` when the call did not reach an answer;
the forwarder (`federation.routing.forwarder`) turns it into the caller's
error text and keeps the books either way.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, cast

import mcp.types as types
from mcp import Client
from mcp.shared.exceptions import MCPError

from federation.connections import CONNECTION_LIMIT_CODE
from federation.const import TRACE_META_KEY
from federation.hopstamp import MetaStamp, ResultStamper
from federation.hostguard import HOST_REFUSED_CODE
from federation.http1 import ConnectionPool, HttpError, PoolTimeout, ReadTimeout, Timeouts
from federation.listen import KEEP_ALIVE_SECONDS
from federation.logrelay import LogRoutes, LogWish
from federation.membership import UNAUTHORIZED_CODE
from federation.peers import Peer
from federation.proof import Tokens
from federation.ratelimit import RATE_LIMITED_CODE
from federation.routing.sessions import CONNECT_SECONDS, PeerGone, SessionPool, root_cause
from federation.toolhost import ToolAnswer

__all__ = ["Delivery", "Failure", "MessageTransport", "ProgressRelay", "Reply", "Send", "SessionTransport", "TransportFailure"]

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ProgressRelay(Protocol):
    """Where a call's progress notifications go; the parameter names are the SDK's (its `ProgressFnT`)."""

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None: ...


_REFUSALS = frozenset({types.INVALID_PARAMS, types.METHOD_NOT_FOUND, UNAUTHORIZED_CODE, HOST_REFUSED_CODE, RATE_LIMITED_CODE, CONNECTION_LIMIT_CODE})
"""JSON-RPC error codes only the peer itself answers with. The SDK's client also turns a broken
transport into JSON-RPC errors (connection closed, an HTTP error without a JSON-RPC body), and a
relay says so when the peer is not attached: those stay `UNREACHABLE`.
"""

_ANSWER_HEADERS_DROPPED = {b"connection", b"keep-alive", b"content-length", b"transfer-encoding", b"date", b"server"}


class Failure(Enum):
    REFUSED = "refused"
    """The peer answered with an error of its own (bad arguments, rate limit, credentials): it is up, the call failed there."""
    TIMEOUT = "timeout"
    """No answer within the caller's deadline: the peer is slow, not gone."""
    OVERLOADED = "overloaded"
    """No free connection to the peer within the caller's deadline."""
    UNREACHABLE = "unreachable"
    """The connection or session failed: one liveness miss."""


class TransportFailure(Exception):
    def __init__(self, kind: Failure, detail: str = "") -> None:
        super().__init__(detail or kind.value)
        self.kind = kind
        self.detail = detail


class Delivery(Protocol):
    """One call on its way: sent with the child trace `meta`, bounded by `remaining` seconds.

    Returns the peer's result, or None when its answer held none (a message
    delivery that passed the answer through as it was).
    """

    async def __call__(self, peer: Peer, meta: dict[str, Any], remaining: float) -> ToolAnswer | None: ...


class SessionTransport:
    """Calls over the peer's pooled SDK session; log messages come back through `logs` (see `federation.logrelay`)."""

    def __init__(self, sessions: SessionPool, logs: LogRoutes) -> None:
        self._sessions = sessions
        self._logs = logs

    def delivery(
        self, tool: str, arguments: dict[str, Any], on_progress: ProgressRelay | None, answers: types.InputResponseRequestParams | None = None, logs: LogWish | None = None
    ) -> Delivery:
        """`answers`: what a retried call carries back after an `input_required` round; `logs`: where the call's log messages go."""
        answers = answers or types.InputResponseRequestParams()

        async def call(client: Client, meta: dict[str, Any], remaining: float) -> ToolAnswer:
            result = await client.session.call_tool(
                tool, arguments, read_timeout_seconds=remaining, progress_callback=on_progress,
                meta=cast(types.RequestParamsMeta, meta),  # an open map: any dict is one
                input_responses=answers.input_responses, request_state=answers.request_state, allow_input_required=True,
            )
            if not isinstance(result, ToolAnswer):
                raise TransportFailure(Failure.UNREACHABLE, f"an answer that is neither a result nor an input round: {type(result).__name__}")
            return result

        async def deliver(peer: Peer, meta: dict[str, Any], remaining: float) -> ToolAnswer:
            try:
                client = await self._sessions.client(peer)
                if logs is None:
                    return await call(client, meta, remaining)
                with self._logs.route(meta[TRACE_META_KEY]["trace_id"], logs.relay):
                    return await call(client, {**meta, types.LOG_LEVEL_META_KEY: logs.level}, remaining)
            except MCPError as exc:
                if exc.error.code == types.REQUEST_TIMEOUT:
                    raise TransportFailure(Failure.TIMEOUT) from exc
                if exc.error.code in _REFUSALS:
                    raise TransportFailure(Failure.REFUSED, exc.error.message) from exc
                raise TransportFailure(Failure.UNREACHABLE, exc.error.message) from exc
            except PeerGone as exc:
                raise TransportFailure(Failure.UNREACHABLE, str(exc)) from exc
            except Exception as exc:  # transport failures all mean the peer is gone for this call
                raise TransportFailure(Failure.UNREACHABLE, repr(root_cause(exc))) from exc

        return deliver


@dataclass
class Reply:
    """The caller's side of a message-level call: where the answer goes, and how far it got."""

    send: Send
    answering: bool = False
    """The answer's start went out: an error can now only end it, not replace it."""
    sse: bool = False
    """The answer streams as SSE (an error can still end it with a last event)."""


class MessageTransport:
    """JSON-RPC messages over a pooled keep-alive HTTP connection per peer, each with a peer token for it (in a mesh); `aclose` when done."""

    def __init__(self, tokens: Tokens | None) -> None:
        self._tokens = tokens
        # Our own HTTP/1.1 pool, not httpx or httpcore: see federation.http1 for why.
        self._pool = ConnectionPool(max_per_origin=256, max_idle_per_origin=64, keepalive_expiry=KEEP_ALIVE_SECONDS / 2)

    async def aclose(self) -> None:
        await self._pool.aclose()

    def delivery(self, tool: str, request: dict[str, Any], headers: list[tuple[bytes, bytes]], stamp: MetaStamp, reply: Reply) -> Delivery:
        """Send `request` (a well-formed tools/call) for `tool`, passing the answer to `reply` with `stamp`ed `_meta`."""

        async def deliver(peer: Peer, meta: dict[str, Any], remaining: float) -> ToolAnswer | None:
            params = request["params"]
            params["name"] = tool
            params["_meta"] = {**(params.get("_meta") or {}), **meta}
            payload = json.dumps(request, separators=(",", ":")).encode()
            sent = [*headers, *self._credential(peer), (b"mcp-name", tool.encode())]
            # A call waiting for a pooled connection is queued work, not a failure: it may wait as long as the caller does.
            timeouts = Timeouts(connect=CONNECT_SECONDS, read=remaining, pool=remaining)
            try:
                return await self._stream(peer.url, sent, payload, timeouts, stamp, reply)
            except PoolTimeout as exc:
                raise TransportFailure(Failure.OVERLOADED) from exc
            except ReadTimeout as exc:
                raise TransportFailure(Failure.TIMEOUT) from exc
            except HttpError as exc:
                raise TransportFailure(Failure.UNREACHABLE, str(exc)) from exc

        return deliver

    def _credential(self, peer: Peer) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", self._tokens.bearer(peer.id).encode())] if self._tokens else []

    async def _stream(
        self, url: str, headers: list[tuple[bytes, bytes]], payload: bytes, timeouts: Timeouts, stamp: MetaStamp, reply: Reply
    ) -> ToolAnswer | None:
        async with self._pool.stream(b"POST", url, headers, payload, timeouts) as response:
            content_type = next((v.decode("latin-1") for k, v in response.headers if k == b"content-type"), "")
            sse = content_type.startswith("text/event-stream")
            stamper = ResultStamper(stamp, sse=sse)
            start: dict[str, Any] = {"type": "http.response.start", "status": response.status, "headers": [(k, v) for k, v in response.headers if k not in _ANSWER_HEADERS_DROPPED]}
            if sse:  # progress streams on as it comes
                await reply.send(start)
                reply.answering = reply.sse = True
            async for chunk in response.body(timeouts.read):
                if out := stamper.feed(chunk):
                    await reply.send({"type": "http.response.body", "body": out, "more_body": True})
            tail = stamper.finish()
            if not reply.answering:  # one JSON message: its length changed with the hop record
                start["headers"].append((b"content-length", str(len(tail)).encode()))
                await reply.send(start)
                reply.answering = True
        await reply.send({"type": "http.response.body", "body": tail, "more_body": False})
        return _as_result(stamper.result)


def _as_result(raw: dict[str, Any] | None) -> ToolAnswer | None:
    """The peer's JSON-RPC result as a `CallToolResult` (or an input round); None if its answer held none, or none that parses."""
    if raw is None:
        return None
    try:
        if raw.get("resultType") == "input_required":
            return types.InputRequiredResult.model_validate(raw)
        return types.CallToolResult.model_validate(raw)
    except ValueError:
        return None
