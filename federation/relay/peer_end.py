"""The peer's end of a tunnel: relayed requests served by the node's own ASGI app, in-process.

No loopback HTTP hop: each OPEN frame becomes an ASGI `http` scope handed to
the node's app (mesh guard included, so the credential is checked again
here), and every `http.response.body` chunk goes back as DATA as soon as the
app sends it, which keeps SSE progress streaming.

Host and Origin are rewritten. A relayed request carries the relay's Host
(and a browser client's Origin), which the MCP SDK's DNS-rebinding
protection rightly rejects on a loopback server. That protection guards
against a web page reaching 127.0.0.1 through the victim's browser; a
tunnelled request never touches the loopback socket, it arrives over a
connection this peer dialled out to a relay that already checked the mesh
credential, and the node's guard checks it again. So the request is handed
to the app as addressed to the node itself (`Host: <node host:port>`, no
Origin).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup
from starlette.types import ASGIApp, Message
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from federation.card import PeerCard
from federation.identity import Identity
from federation.relay.frames import (
    Auth,
    Challenge,
    Frame,
    FrameError,
    Kind,
    Limits,
    Publish,
    Refused,
    RequestHead,
    Reset,
    ResponseHead,
    Welcome,
    challenge_message,
    decode,
    encode,
    encode_control,
    parse_control,
    parse_credit,
    parse_model,
    parse_open,
)

__all__ = ["PeerEnd", "TunnelRefused", "handshake"]

logger = logging.getLogger(__name__)

_DROPPED_HEADERS = frozenset({"host", "origin"})
_MAX_PIECE = 64 * 1024


class TunnelRefused(Exception):
    """The relay refused this peer (credential, key, card); the message is the relay's."""


async def _receive_control(connection: ClientConnection, max_bytes: int) -> Challenge | Welcome:
    message = parse_control(decode(await connection.recv(), max_bytes=max_bytes))
    if isinstance(message, Refused):
        raise TunnelRefused(message.message)
    if not isinstance(message, (Challenge, Welcome)):
        raise FrameError(f"unexpected {message.type!r} from the relay during the handshake")
    return message


async def handshake(connection: ClientConnection, identity: Identity, card: PeerCard, max_request_bytes: int) -> tuple[Limits, str]:
    """Answer the relay's challenge and publish `card`; returns the relay's limits and our path there."""
    challenge = await _receive_control(connection, max_request_bytes)
    if not isinstance(challenge, Challenge):
        raise FrameError("the relay did not start with a challenge")
    signature = identity.sign(challenge_message(challenge.nonce))
    auth = Auth(
        peer_id=identity.peer_id,
        pubkey=base64.b64encode(identity.public_key).decode("ascii"),
        signature=base64.b64encode(signature).decode("ascii"),
        max_request_bytes=max_request_bytes,
    )
    await connection.send(encode_control(auth))
    await connection.send(encode_control(Publish(card=card.model_dump(mode="json"))))
    welcome = await _receive_control(connection, challenge.limits.max_frame_bytes)
    if not isinstance(welcome, Welcome):
        raise FrameError("the relay answered the handshake without a welcome")
    return challenge.limits, welcome.path


class _Stream:
    """One relayed request on the peer: its send credit and whether the client is gone."""

    def __init__(self, window: int) -> None:
        self.credit = window
        self.more_credit = anyio.Event()
        self.gone = anyio.Event()
        self.finished = False

    def grant(self, amount: int) -> None:
        self.credit += amount
        self.more_credit.set()

    def abort(self) -> None:
        self.gone.set()
        self.more_credit.set()

    async def take_credit(self, amount: int) -> bool:
        """Wait until `amount` bytes may be sent; False if the stream ended meanwhile."""
        while self.credit < amount and not self.gone.is_set():
            self.more_credit = anyio.Event()
            await self.more_credit.wait()
        if self.gone.is_set():
            return False
        self.credit -= amount
        return True


class PeerEnd:
    """Serves relayed requests on one live tunnel until it closes."""

    def __init__(self, connection: ClientConnection, app: ASGIApp, limits: Limits, *, local_netloc: str) -> None:
        self.connection = connection
        self._app = app
        self._limits = limits
        self._host = local_netloc.encode("latin-1")
        server_host, _, server_port = local_netloc.rpartition(":")
        self._server = (server_host.strip("[]"), int(server_port))
        self._piece = min(_MAX_PIECE, limits.window // 2, limits.max_frame_bytes - 16)
        self._streams: dict[int, _Stream] = {}

    async def publish(self, card: PeerCard) -> None:
        await self.connection.send(encode_control(Publish(card=card.model_dump(mode="json"))))

    async def serve(self, group: TaskGroup) -> str:
        """Read frames, starting a task in `group` per request; returns why the tunnel ended."""
        try:
            while True:
                frame = decode(await self.connection.recv(), max_bytes=self._limits.max_request_bytes + self._limits.max_frame_bytes)
                self._dispatch(frame, group.start_soon)
        except ConnectionClosed as exc:
            reason = exc.rcvd.reason if exc.rcvd and exc.rcvd.reason else "connection lost"
            return f"the relay closed the tunnel ({reason})"
        finally:
            for stream in self._streams.values():
                stream.abort()

    def _dispatch(self, frame: Frame, start: Callable[..., Any]) -> None:
        if frame.kind is Kind.OPEN:
            head, body = parse_open(frame)
            opened = _Stream(self._limits.window)
            self._streams[frame.stream] = opened
            start(self._serve_stream, frame.stream, opened, head, body)
        elif frame.kind is Kind.CREDIT:
            if stream := self._streams.get(frame.stream):
                stream.grant(parse_credit(frame))
        elif frame.kind is Kind.RESET:
            if stream := self._streams.get(frame.stream):
                logger.debug("relay reset stream %d: %s", frame.stream, parse_model(frame, Reset).message)
                stream.abort()
        elif frame.kind is Kind.CONTROL:
            message = parse_control(frame)
            if isinstance(message, Refused):
                raise TunnelRefused(message.message)
            raise FrameError(f"unexpected {message.type!r} from the relay")
        else:
            raise FrameError(f"a relay may not send {frame.kind.name} frames")

    def _scope(self, head: RequestHead) -> dict[str, Any]:
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in head.headers if k.lower() not in _DROPPED_HEADERS]
        headers.append((b"host", self._host))
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": head.method,
            "scheme": "http",
            "path": head.path,
            "raw_path": head.path.encode("utf-8"),
            "query_string": head.query.encode("latin-1"),
            "root_path": "",
            "headers": headers,
            "client": None,
            "server": self._server,
            "extensions": {},
        }

    async def _serve_stream(self, stream_id: int, stream: _Stream, head: RequestHead, body: bytes) -> None:
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await stream.gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if stream.gone.is_set():
                return  # the client left: drop the rest, as a server does
            if message["type"] == "http.response.start":
                pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
                await self._send(Kind.HEAD, stream_id, ResponseHead(status=message["status"], headers=pairs).model_dump_json().encode("utf-8"))
            elif message["type"] == "http.response.body":
                await self._send_body(stream_id, stream, message.get("body", b""))
                if not message.get("more_body", False):
                    stream.finished = True
                    await self._send(Kind.END, stream_id)
                    stream.abort()

        try:
            await self._app(self._scope(head), receive, send)
        except Exception as exc:  # the app's failure ends this stream only
            logger.exception("relayed request %s %s failed", head.method, head.path)
            await self._reset(stream_id, stream, f"the peer failed the request: {exc!r}")
        else:
            await self._reset(stream_id, stream, "the peer's app ended without a complete response")
        finally:
            self._streams.pop(stream_id, None)

    async def _send_body(self, stream_id: int, stream: _Stream, body: bytes) -> None:
        for start in range(0, len(body), self._piece):
            piece = body[start : start + self._piece]
            if not await stream.take_credit(len(piece)):
                return
            await self._send(Kind.DATA, stream_id, piece)

    async def _reset(self, stream_id: int, stream: _Stream, message: str) -> None:
        if stream.finished or stream.gone.is_set():
            return
        stream.abort()
        await self._send(Kind.RESET, stream_id, Reset(message=message).model_dump_json().encode("utf-8"))

    async def _send(self, kind: Kind, stream_id: int, payload: bytes = b"") -> None:
        try:
            await self.connection.send(encode(kind, stream_id, payload))
        except ConnectionClosed:
            pass  # serve() sees the close and ends every stream
