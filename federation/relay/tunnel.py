"""The relay's end of one peer's tunnel: many HTTP requests multiplexed over one WebSocket.

Each relayed request is a `RelayedStream`. The tunnel's reader (run by the
relay's WebSocket endpoint) hands every HEAD/DATA/END/RESET frame to its
stream without ever waiting, so one slow HTTP client cannot stall the other
streams; the per-stream window (frames.py) bounds what a stream may buffer.
Writes to the peer go one at a time (so the socket's write buffer, not a
pile of concurrent writers, bounds what waits in memory) and wait at most
`send_timeout`: a peer that stops reading is dropped, its streams fail with a message naming the limit, and nothing else
on the relay waits for it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.websockets import WebSocket

from federation.relay.frames import (
    Frame,
    FrameError,
    Kind,
    Limits,
    RequestHead,
    Reset,
    ResponseHead,
    encode,
    encode_credit,
    encode_open,
    parse_model,
)
from federation.relay.received import ReceivedCard

__all__ = ["End", "RelayedStream", "Tunnel", "TunnelClosed", "TunnelFull"]


class TunnelClosed(Exception):
    """The tunnel went away; the message says why (shown to the HTTP client)."""


class TunnelFull(Exception):
    """The tunnel already carries `max_streams` requests."""


@dataclass(frozen=True, slots=True)
class End:
    """The response body is complete."""


StreamEvent = ResponseHead | bytes | End | Reset


class RelayedStream:
    """One request through the tunnel, seen from the relay: events in arrival order."""

    def __init__(self, tunnel: Tunnel, stream_id: int) -> None:
        self.tunnel = tunnel
        self.id = stream_id
        self.unacked = 0
        self.finished = False
        self._send: MemoryObjectSendStream[StreamEvent]
        self._receive: MemoryObjectReceiveStream[StreamEvent]
        self._send, self._receive = anyio.create_memory_object_stream[StreamEvent](math.inf)

    def deliver(self, event: StreamEvent) -> None:
        if isinstance(event, (End, Reset)):
            self.finished = True
        try:
            self._send.send_nowait(event)
        except anyio.BrokenResourceError:  # the HTTP side already left
            pass

    async def next(self) -> StreamEvent:
        return await self._receive.receive()

    async def acknowledge(self, consumed: int) -> None:
        """The client took `consumed` bytes: let the peer send that much more."""
        self.unacked -= consumed
        await self.tunnel.send(encode_credit(self.id, consumed))

    def close(self) -> None:
        self._receive.close()
        self._send.close()


class Tunnel:
    """A connected, authenticated peer."""

    def __init__(self, websocket: WebSocket, received: ReceivedCard, limits: Limits, *, send_timeout: float) -> None:
        self.websocket = websocket
        self.received = received
        self.limits = limits
        self._send_timeout = send_timeout
        self._writing = anyio.Lock(fast_acquire=True)  # one writer at a time: uvicorn wakes every waiting writer at once
        self._streams: dict[int, RelayedStream] = {}
        self._ids = itertools.count(1)
        self.closed = anyio.Event()
        self.close_reason = ""

    @property
    def peer_id(self) -> str:
        return self.received.card.id

    @property
    def in_flight(self) -> int:
        return len(self._streams)

    async def send(self, message: bytes) -> None:
        """Write one frame; a peer that does not take it within `send_timeout` loses its tunnel."""
        if self.closed.is_set():
            raise TunnelClosed(self.close_reason)
        try:
            with anyio.fail_after(self._send_timeout):
                async with self._writing:
                    await self.websocket.send_bytes(message)
        except TimeoutError:
            self.fail(f"peer {self.peer_id}'s tunnel stopped reading for {self._send_timeout:g} s (send_timeout); the relay dropped it")
            raise TunnelClosed(self.close_reason) from None
        except (OSError, RuntimeError) as exc:  # the socket closed under us
            self.fail(f"peer {self.peer_id}'s tunnel closed ({exc})")
            raise TunnelClosed(self.close_reason) from None

    async def open(self, head: RequestHead, body: bytes) -> RelayedStream:
        """Start a request on the peer; TunnelFull or TunnelClosed when it cannot."""
        if self.closed.is_set():
            raise TunnelClosed(self.close_reason)
        if len(self._streams) >= self.limits.max_streams:
            raise TunnelFull(
                f"peer {self.peer_id} already has {len(self._streams)} requests in flight through this relay "
                f"(max_streams={self.limits.max_streams}); retry shortly"
            )
        stream = RelayedStream(self, next(self._ids))
        self._streams[stream.id] = stream
        try:
            await self.send(encode_open(stream.id, head, body))
        except BaseException:
            self.forget(stream)
            raise
        return stream

    def forget(self, stream: RelayedStream) -> None:
        self._streams.pop(stream.id, None)
        stream.close()

    async def reset(self, stream: RelayedStream, message: str) -> None:
        """Tell the peer to abandon a stream (best effort: the tunnel may be gone)."""
        self.forget(stream)
        try:
            await self.send(encode(Kind.RESET, stream.id, Reset(message=message).model_dump_json().encode("utf-8")))
        except TunnelClosed:
            pass

    def dispatch(self, frame: Frame) -> None:
        """Route a frame from the peer to its stream; FrameError for frames a peer may not send."""
        if frame.kind not in (Kind.HEAD, Kind.DATA, Kind.END, Kind.RESET):
            raise FrameError(f"a peer may not send {frame.kind.name} frames")
        stream = self._streams.get(frame.stream)
        if stream is None or stream.finished:
            return  # the relay already gave up on it; late frames are expected
        if frame.kind is Kind.HEAD:
            stream.deliver(parse_model(frame, ResponseHead))
        elif frame.kind is Kind.DATA:
            stream.unacked += len(frame.payload)
            if stream.unacked > self.limits.window:
                raise FrameError(f"stream {frame.stream} overran its flow-control window of {self.limits.window} bytes")
            stream.deliver(frame.payload)
        elif frame.kind is Kind.END:
            stream.deliver(End())
        else:
            stream.deliver(parse_model(frame, Reset))

    def fail(self, reason: str) -> None:
        """The tunnel is over: every open stream ends with `reason`."""
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        for stream in list(self._streams.values()):
            stream.deliver(Reset(message=reason))
        self._streams.clear()
