"""`FastServe`: a modern-era `tools/call` this peer serves itself, without the SDK's HTTP transport.

A 2026-07-28 request is one self-contained POST, and for a plain tool call
the SDK's streamable-HTTP entry (Starlette routing, the session manager, a
`Request` per check, a memory stream and two tasks per call, pydantic
(de)serialising the envelope twice) costs about as much as the echo tool
it serves. This middleware parses the body once, runs the SDK's own checks
(the routing-header ladder, `Mcp-Param-*` headers) and its own dispatch
(`serve_one`: the server's middleware, handler, error mapping), and writes
the answer as the SDK does: JSON when the handler finishes without a
notification, else `text/event-stream` from the first notification on, with
a keepalive ping while a long call is silent. A caller who hangs up cancels
the call (in this era closing the request is the cancellation).

Only what it can answer exactly as the SDK would is taken: a well-formed
`tools/call` with the routing headers, no session, no `Mcp-Param-*`
headers, no progress token, no log level, no `inputResponses`/`requestState`
(an `input_required` round's retry) and no task. Everything else, malformed
requests included, goes to the SDK app untouched, so the errors are its own.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp.types as types
from mcp.server import Server
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import lifespan as default_lifespan
from mcp.server.runner import modern_error_data, serve_one
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundModernRoute,
    classify_inbound_request,
    find_duplicated_routing_header,
    validate_mcp_param_headers,
)
from mcp.shared.message import MessageMetadata, ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from starlette.datastructures import Headers
from starlette.requests import Request

from federation.asgiutil import MODERN, Receive, Scope, Send, header, read_whole_body, replay, send_json

__all__ = ["FastServe"]

PING_SECONDS = 15.0
"""A silent call's keepalive interval once its answer streams (the SDK's `_SSE_PING_INTERVAL`)."""

_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform"), (b"connection", b"keep-alive"), (b"x-accel-buffering", b"no")]
_PARAMS_TAKEN = {"name", "arguments", "_meta"}
_ENVELOPE = {"jsonrpc", "id", "method", "params"}
_STREAMING_META = {"progressToken", types.LOG_LEVEL_META_KEY}
"""`_meta` keys that ask for notifications on the answer's stream: the SDK path serves those."""


def _event(message: Mapping[str, Any]) -> bytes:
    """One SSE frame, as the SDK writes it."""
    return b"event: message\r\ndata: " + json.dumps(message, separators=(",", ":")).encode() + b"\r\n\r\n"


class _Answer:
    """The caller's response: JSON if nothing streamed before the end, else SSE from the first event on."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.streaming = False

    async def event(self, frame: bytes) -> None:
        if not self.streaming:
            self.streaming = True  # before awaiting: a ping and a notification may race to start the stream
            await self._send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        await self._send({"type": "http.response.body", "body": frame, "more_body": True})

    async def finish(self, message: dict[str, Any], status: int) -> None:
        if self.streaming:
            await self._send({"type": "http.response.body", "body": _event(message), "more_body": False})
        else:
            await send_json(self._send, status, message)


@dataclass
class _Exchange:
    """The SDK's `DispatchContext` for one request: no back-channel (this era forbids server requests), notifications onto the answer."""

    transport: TransportContext
    request_id: types.RequestId
    message_metadata: MessageMetadata
    answer: _Answer
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)
    can_send_request: bool = False

    async def send_raw_request(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        await self.answer.event(_event(message))

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """No progress token (such calls take the SDK path): nothing to report to."""


class FastServe:
    """ASGI middleware in front of the SDK app of `server`; serves plain modern-era tool calls itself."""

    def __init__(self, app: Any, *, server: Server[Any], max_request_bytes: int, mcp_path: str) -> None:
        # The SDK's session manager enters the server's lifespan once and hands its state to each request;
        # this path has no manager, so it serves only servers with the default (stateless) lifespan.
        if server.lifespan is not default_lifespan:
            raise ValueError("FastServe serves only a Server without a lifespan of its own")
        self._app = app
        self._server = server
        self._limit = max_request_bytes
        self._path = mcp_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._takes(scope):
            await self._app(scope, receive, send)
            return
        body = await read_whole_body(scope, receive, send, self._limit)
        if body is None:  # answered 413, or the caller left before sending the whole request
            return
        call = _plain_call(scope, body)
        if call is None or self._header_mismatch(scope, call[0]["params"]):
            await self._app(scope, replay(body, receive), send)
            return
        await self._serve(scope, body, *call, receive, send)

    def _takes(self, scope: Scope) -> bool:
        """Whether the headers alone allow the fast path: a modern POST of tools/call, without session or `Mcp-Param-*`."""
        if scope["method"] != "POST" or scope["path"] != self._path:
            return False
        if header(scope, b"mcp-method") != b"tools/call" or header(scope, b"mcp-protocol-version") != MODERN:
            return False
        content_type, accept = header(scope, b"content-type"), header(scope, b"accept")
        if content_type is None or not content_type.lower().startswith(b"application/json") or accept is None or not _accepts_both(accept):
            return False
        return all(key != b"mcp-session-id" and not key.startswith(b"mcp-param-") for key, _ in scope["headers"])

    def _header_mismatch(self, scope: Scope, params: dict[str, Any]) -> bool:
        """Whether the SDK would refuse the call's arguments for `Mcp-Param-*` headers its tool's schema asks for (and none came)."""
        arguments = params.get("arguments") or {}
        if not arguments:
            return False
        lookup = self._server.get_tool_input_schema
        if lookup is None:  # the SDK would list the tools to find the schema: its path
            return True
        schema = lookup(params["name"])
        return schema is not None and validate_mcp_param_headers(schema, arguments, Headers(scope=scope)) is not None

    async def _serve(self, scope: Scope, body: bytes, request: dict[str, Any], route: InboundModernRoute, receive: Receive, send: Send) -> None:
        answer = _Answer(send)
        headers = Headers(scope=scope)
        exchange = _Exchange(
            transport=TransportContext(kind="streamable-http", can_send_request=False, headers=headers),
            request_id=request["id"],
            message_metadata=ServerMessageMetadata(request_context=Request(scope, replay(body, receive))),
            answer=answer,
        )
        connection = Connection.from_envelope(route.protocol_version, route.client_info, route.client_capabilities)
        reply: dict[str, Any] | None = None
        status = 200

        async def handle() -> None:
            nonlocal reply, status
            try:
                result = await serve_one(self._server, exchange, "tools/call", request["params"], connection=connection, lifespan_state={})
            except Exception as exc:  # noqa: BLE001 - the SDK's own mapping of handler errors to the wire
                error = modern_error_data(exc)
                status = ERROR_CODE_HTTP_STATUS.get(error.code, 200)
                reply = {"jsonrpc": "2.0", "id": request["id"], "error": error.model_dump(mode="json", by_alias=True, exclude_none=True)}
            else:
                reply = {"jsonrpc": "2.0", "id": request["id"], "result": result}

        left = await _unless_caller_leaves(receive, handle, answer)
        if not left and reply is not None:
            await answer.finish(reply, status)


def _accepts_both(accept: bytes) -> bool:
    """The SDK's Accept rule for an SSE-mode server: JSON and SSE both acceptable (wildcards count)."""
    types_ = {part.split(b";")[0].strip().lower() for part in accept.split(b",")}
    wildcard = b"*/*" in types_
    return (wildcard or bool(types_ & {b"application/json", b"application/*"})) and (wildcard or bool(types_ & {b"text/event-stream", b"text/*"}))


def _plain_call(scope: Scope, body: bytes) -> tuple[dict[str, Any], InboundModernRoute] | None:
    """The request and its envelope if it is a plain tools/call the SDK would dispatch, else None (the SDK answers it)."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(request, dict) or not request.keys() <= _ENVELOPE or request.get("jsonrpc") != "2.0" or request.get("method") != "tools/call":
        return None
    request_id, params = request.get("id"), request.get("params")
    if type(request_id) not in (int, str) or not isinstance(params, dict) or not params.keys() <= _PARAMS_TAKEN:
        return None
    meta, arguments = params.get("_meta"), params.get("arguments", {})
    if not isinstance(meta, dict) or not isinstance(arguments, dict) or not meta.keys().isdisjoint(_STREAMING_META):
        return None
    raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    if find_duplicated_routing_header(raw) is not None:
        return None
    route = classify_inbound_request(request, headers=dict(raw))
    if not isinstance(route, InboundModernRoute):
        return None
    return request, route


async def _unless_caller_leaves(receive: Receive, handle: Callable[[], Awaitable[None]], answer: _Answer) -> bool:
    """Run `handle`, cut short if the caller disconnects, pinging the caller while it is silent; whether the caller left."""
    left = False
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            nonlocal left
            while True:
                with anyio.move_on_after(PING_SECONDS):
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    left = True
                    group.cancel_scope.cancel()
                    return
                await answer.event(b": ping\r\n\r\n")

        group.start_soon(watch)
        await handle()
        group.cancel_scope.cancel()
    return left
