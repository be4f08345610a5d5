"""The lend tunnel: the only way a host reaches a lender's ggml RPC server.

llama.cpp's RPC protocol has no authentication or encryption, so a lender's
RPC server binds 127.0.0.1 and nothing else. A host reaches it through the
lender peer's own HTTP app: a WebSocket on `LEND_PATH`, behind the node's
guards (Host check, mesh guard), that `LendDesk` accepts only from a peer
that proved membership (a per-pair peer token addressed to the lender;
`federation.proof`) and only while no other host is attached (one host at a
time: another gets HTTP 409 saying who holds it; the attached host may open
several, as ggml's client reconnects between its probe and the load). Each accepted tunnel
is piped, byte for byte, to the RPC port.

On the host, `LenderTunnel` listens on 127.0.0.1:0 per lender; the split
model's child process dials that loopback endpoint as if it were the RPC
server, and every connection it opens becomes one WebSocket to the lender.

Bounds: messages of at most `LEND_FRAME_BYTES` (a bigger one closes the
tunnel), the first bytes within `LEND_FIRST_BYTES_SECONDS`, the handshake
within `LEND_CONNECT_SECONDS`, WebSocket pings to find a dead end.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream, TaskGroup
from starlette.types import Message, Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from federation.const import LEND_CONNECT_SECONDS, LEND_FIRST_BYTES_SECONDS, LEND_FRAME_BYTES, LEND_PATH
from federation.membership import UNAUTHORIZED_CODE, proven_peer
from federation.refusal import error_message, refuse
from federation.urls import base_url

__all__ = ["LEND_BUSY_CODE", "LendDesk", "LenderTunnel", "TunnelRefused"]

logger = logging.getLogger(__name__)

LEND_BUSY_CODE = -32046
"""JSON-RPC error code of a lend tunnel refused because another host is attached (HTTP 409)."""

_READ_BYTES = 64 * 1024
"""What one read of the RPC socket (either end) may take: one WebSocket message each."""

_TOO_BIG, _NOT_BYTES, _IDLE, _UPSTREAM_GONE = 1009, 1003, 1008, 1011


class TunnelRefused(Exception):
    """A lender would not open a tunnel (busy, not a member, not lending); the message says which and why."""


# -- the lender's side ---------------------------------------------------------
class LendDesk:
    """ASGI endpoint of `LEND_PATH`: one proven host at a time, piped to the RPC server at `rpc_port()`.

    `rpc_port()` is None while the lender is not serving. `require_proof`:
    the node is in a mesh with a secret, so only peer tokens pass (a node
    outside any mesh is open on loopback only, like all its routes).
    """

    def __init__(self, rpc_port: Callable[[], int | None], *, require_proof: bool) -> None:
        self._rpc_port = rpc_port
        self._require_proof = require_proof
        self._tunnels = 0
        self.host: str | None = None
        """The peer id of the host attached now ("local" for a caller outside any mesh), None when free."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await refuse(scope, send, 400, f"{LEND_PATH} is a WebSocket route for hosts of a split model", code=UNAUTHORIZED_CODE)
            return
        caller = proven_peer(scope)
        if self._require_proof and caller is None:
            await refuse(scope, send, 401, "lending is only to mesh peers that proved membership (a peer token for this lender)", code=UNAUTHORIZED_CODE)
            return
        port = self._rpc_port()
        if port is None:
            await refuse(scope, send, 503, "this peer is not lending now (its RPC server is not running)", code=LEND_BUSY_CODE)
            return
        caller = caller or "local"
        if self.host not in (None, caller):
            message = f"lender busy: it lends to host {self.host} now (one host at a time); try another lender or later"
            await refuse(scope, send, 409, message, code=LEND_BUSY_CODE, data={"reason": "lender_busy", "host": self.host})
            return
        self._attach(caller, +1)
        try:
            await self._serve(port, scope, receive, send)
        finally:
            self._attach(caller, -1)

    def _attach(self, host: str, change: int) -> None:
        """Count the attached host's tunnels: its model reconnects (a probe, then the load) and may overlap the last close."""
        self._tunnels += change
        self.host = host if self._tunnels else None

    async def _serve(self, port: int, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            with anyio.fail_after(LEND_CONNECT_SECONDS):
                rpc = await anyio.connect_tcp("127.0.0.1", port)
        except (OSError, TimeoutError):
            await refuse(scope, send, 503, "the lender's RPC server does not answer", code=LEND_BUSY_CODE)
            return
        await send({"type": "websocket.accept"})
        reason = (1000, "the RPC server closed the connection")
        async with rpc, anyio.create_task_group() as group:
            group.start_soon(_rpc_to_host, rpc, send, group.cancel_scope)
            reason = await _host_to_rpc(rpc, receive)
            group.cancel_scope.cancel()
        await _close(send, *reason)


async def _rpc_to_host(rpc: ByteStream, send: Send, scope: anyio.CancelScope) -> None:
    try:
        while True:
            await send({"type": "websocket.send", "bytes": await rpc.receive(_READ_BYTES)})
    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        pass
    scope.cancel()


async def _host_to_rpc(rpc: ByteStream, receive: Receive) -> tuple[int, str]:
    """Pipe the host's messages into `rpc` until the host leaves or breaks a bound: (close code, reason)."""
    first = True
    while True:
        with anyio.move_on_after(LEND_FIRST_BYTES_SECONDS if first else math.inf) as waited:
            message: Message = await receive()
        if waited.cancelled_caught:
            return _IDLE, f"no bytes within {LEND_FIRST_BYTES_SECONDS:g} s of opening the tunnel"
        if message["type"] == "websocket.disconnect":
            return 1000, ""
        data = message.get("bytes")
        if data is None:
            return _NOT_BYTES, "a lend tunnel carries binary messages only"
        if len(data) > LEND_FRAME_BYTES:
            return _TOO_BIG, f"message over {LEND_FRAME_BYTES} bytes"
        first = False
        try:
            await rpc.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return _UPSTREAM_GONE, "the lender's RPC server went away"


async def _close(send: Send, code: int, reason: str) -> None:
    try:
        await send({"type": "websocket.close", "code": code, "reason": reason})
    except (OSError, RuntimeError):  # the host already left
        pass


# -- the host's side -------------------------------------------------------------
class LenderTunnel:
    """A loopback endpoint (`endpoint`, "127.0.0.1:PORT") whose connections reach one lender's RPC server.

    `url` is the lender's base URL (direct route), `headers()` its peer
    token. `probe()` opens and closes one tunnel, raising `TunnelRefused`
    with the lender's reason (busy, not a member); a connection the lender
    refuses later is closed, and `problem` keeps the reason.
    """

    def __init__(self, url: str, headers: Callable[[], dict[str, str]], *, name: str) -> None:
        self._ws_url = "ws" + base_url(url).removeprefix("http") + LEND_PATH
        self._headers = headers
        self.name = name
        self.problem: str | None = None
        self.endpoint = ""
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> LenderTunnel:
        async with AsyncExitStack() as stack:
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            await stack.enter_async_context(listener)
            self.endpoint = f"127.0.0.1:{listener.extra(SocketAttribute.local_port)}"
            group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(group.cancel_scope.cancel)
            group.start_soon(listener.serve, self._carry, group)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()

    async def probe(self) -> None:
        """Open one tunnel and close it: `TunnelRefused` says why the lender would not take this host."""
        connection = await self._open()
        await connection.close()

    async def _open(self) -> ClientConnection:
        try:
            with anyio.fail_after(LEND_CONNECT_SECONDS):
                return await connect(
                    self._ws_url,
                    additional_headers=self._headers(),
                    open_timeout=LEND_CONNECT_SECONDS,
                    max_size=LEND_FRAME_BYTES,
                    compression=None,
                    ping_interval=5,
                    ping_timeout=10,
                    close_timeout=1,
                )
        except InvalidStatus as exc:
            self.problem = f"lender {self.name} refused the tunnel (HTTP {exc.response.status_code}): {error_message(exc.response.body) or '(no reason given)'}"
        except (OSError, TimeoutError, WebSocketException) as exc:
            self.problem = f"lender {self.name} cannot be reached at {self._ws_url}: {type(exc).__name__} {exc}".strip()
        raise TunnelRefused(self.problem)

    async def _carry(self, local: SocketStream) -> None:
        """One local connection (the split model dialling its RPC server) piped through one WebSocket."""
        async with local:
            try:
                connection = await self._open()
            except TunnelRefused as exc:
                logger.warning("%s", exc)
                return
            async with connection, anyio.create_task_group() as group:
                group.start_soon(_local_to_lender, local, connection, group)
                try:
                    async for message in connection:
                        await local.send(message if isinstance(message, bytes) else message.encode())
                except (ConnectionClosed, anyio.BrokenResourceError, OSError):
                    pass
                group.cancel_scope.cancel()


async def _local_to_lender(local: SocketStream, connection: ClientConnection, group: TaskGroup) -> None:
    try:
        while True:
            await connection.send(await local.receive(_READ_BYTES))
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionClosed, OSError):
        pass
    group.cancel_scope.cancel()
