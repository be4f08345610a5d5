"""A lean pooled HTTP/1.1 client for a peer's hot paths: the forwarder's POSTs, the health pings, card fetches.

Why not httpcore (or httpx on top of it): a hop is one request on a kept-alive
connection, and with peers in separate processes httpcore's pure-Python h11
parser and the anyio cancel scope around each read and write cost ~0.22 ms of
a hop's ~1 ms (measured in `bench.hops`' process variant). Here a connection is
an asyncio protocol that feeds httptools' C parser (the one uvicorn serves
with) and wakes the waiting call once per event; nothing else runs per byte.

The health monitor's pings (`federation.discovery.health`) use it too: every
peer pings a few others every second, and with httpx a ping cost ~0.7 ms of
client CPU, enough that 50 peers on one 2-core machine could not keep up.
So does discovery (`federation.discovery.admission`): while a mesh of N forms,
each peer fetches every other's card (and proves membership to it), N² fetches.

What those need and nothing more: connections kept alive per origin
(LIFO, so the warmest is reused) and expired before our servers close idle ones;
at most `max_per_origin` connections at once, further calls queueing up to
their `pool` deadline (`PoolTimeout`: the peer is overloaded, not gone); a read
deadline between events; backpressure (reading pauses while the caller has not
taken the answer); and a call cancelled mid-answer closes its connection
rather than returning half a response to the pool. TLS uses the process's
verifying context (`federation.tls`), so `--ca` reaches forwarded calls too.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import SplitResult, urlsplit

import httptools

from federation.tls import client_context

__all__ = ["ConnectionPool", "HttpError", "PoolTimeout", "ReadTimeout", "Response", "Timeouts", "TooLarge", "Unreachable"]

_PAUSE_BYTES = 256 * 1024
"""Answer bytes buffered before reading from the peer pauses until the caller takes them."""


class HttpError(Exception):
    """A request that got no (whole) answer."""


class Unreachable(HttpError):
    """The connection could not be made, or broke, or the peer's answer was not HTTP."""


class ReadTimeout(HttpError):
    """The peer (or the connection attempt) was silent for longer than the call's deadline."""


class TooLarge(HttpError):
    """A whole answer read with `fetch` was longer than its limit."""


class PoolTimeout(HttpError):
    """Every connection to the peer stayed busy until the call's deadline."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds a request may take to connect, between two events of its answer, and waiting for a free connection."""

    connect: float
    read: float
    pool: float


class Response:
    """An answer on its way: status and headers first, then `body()` as it comes."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        """(lower-case name, value) as the peer sent them."""
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self.complete = False
        self.keep_alive = False
        """The peer keeps the connection open after this answer (known with the headers: the parser forgets it at the end)."""
        self._error: HttpError | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def body(self, read_timeout: float) -> AsyncIterator[bytes]:
        """The answer's body, chunk by chunk as the peer sends it; ReadTimeout after `read_timeout` s of silence."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered < _PAUSE_BYTES:
                    self._connection.resume()
                yield chunk
            elif self.complete:
                return
            else:
                await self.wait(read_timeout)

    async def wait(self, timeout: float) -> None:
        """Until the next event (headers, a chunk, the end, a failure); raises the failure."""
        if self._error is not None:
            raise self._error
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        alarm = loop.call_later(timeout, _fail, waiter, ReadTimeout(f"no answer for {timeout:.1f} s"))
        try:
            await waiter
        finally:
            alarm.cancel()
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: HttpError) -> None:
        if self._error is None and not self.complete:
            self._error = error
            if self._waiter is not None:
                _fail(self._waiter, error)

    # httptools' callbacks (the parser calls them from `data_received`)
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status, self.keep_alive = self._connection.status_code(), self._connection.keep_alive()
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered >= _PAUSE_BYTES:
            self._connection.pause()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()


def _fail(waiter: asyncio.Future[None], error: HttpError) -> None:
    if not waiter.done():
        waiter.set_exception(error)


class _Connection(asyncio.Protocol):
    """One kept-alive connection to an origin; carries one request at a time."""

    def __init__(self, on_lost: _Origin) -> None:
        self._origin = on_lost
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._response: Response | None = None
        self.closed = False
        self.forgotten = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes) -> Response:
        assert self._transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._response = Response(self)
        self._transport.write(request)
        return self._response

    def status_code(self) -> int:
        return self._parser.get_status_code()

    def keep_alive(self) -> bool:
        return self._parser.should_keep_alive()

    def done(self) -> bool:
        """The last answer was read whole and the peer keeps the connection open: it may carry another request."""
        return not self.closed and self._response is not None and self._response.complete and self._response.keep_alive

    def pause(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._transport is not None and not self.closed and not self._transport.is_reading():
            self._transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None or response.complete:  # bytes nobody asked for: the connection is not HTTP as we know it
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response._fail(Unreachable(f"the peer's answer is not valid HTTP/1.1 ({exc})"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._response is not None:
            self._response._fail(Unreachable(f"the connection closed before the answer was complete ({exc or 'closed by the peer'})"))
        self._origin.forget(self)

    # httptools' callbacks, passed on to the response being read
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._response is not None
        self._response.on_header(name, value)

    def on_headers_complete(self) -> None:
        assert self._response is not None
        self._response.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        assert self._response is not None
        self._response.on_body(body)

    def on_message_complete(self) -> None:
        assert self._response is not None
        self._response.on_message_complete()


@dataclass
class _Origin:
    """The connections to one scheme://host:port: idle ones, how many exist, and calls waiting for one."""

    host: str
    port: int
    tls: bool
    idle: list[_Connection] = field(default_factory=list)
    open: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)

    def forget(self, connection: _Connection) -> None:
        """A connection closed: no longer counted, and a waiting call may open another (once per connection)."""
        if connection.forgotten:
            return
        connection.forgotten = True
        if connection in self.idle:
            self.idle.remove(connection)
        self.open -= 1
        self.wake_one()

    def wake_one(self) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class ConnectionPool:
    """Kept-alive connections per origin; `async with pool.stream(...)` sends one request. `aclose()` (or `async with pool`) when done."""

    def __init__(self, *, max_per_origin: int, max_idle_per_origin: int, keepalive_expiry: float) -> None:
        self._max = max_per_origin
        self._max_idle = max_idle_per_origin
        self._expiry = keepalive_expiry
        self._origins: dict[tuple[str, int, bool], _Origin] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> ConnectionPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for origin in self._origins.values():
            for connection in list(origin.idle):
                connection.close()
        self._origins.clear()

    def drop(self, url: str) -> None:
        """Close the idle connections to `url`'s origin (a peer that is gone or moved)."""
        origin = self._origins.pop(_origin_key(urlsplit(url)), None)
        for connection in list(origin.idle if origin else []):
            connection.close()

    async def fetch(
        self, method: bytes, url: str, headers: list[tuple[bytes, bytes]], timeouts: Timeouts, *, limit: int, body: bytes = b""
    ) -> tuple[int, bytes]:
        """(status, whole answer body) of a small request (`body`: its content-type goes in `headers`); TooLarge past `limit` bytes."""
        async with self.stream(method, url, headers, body, timeouts) as response:
            answer = bytearray()
            async for chunk in response.body(timeouts.read):
                answer += chunk
                if len(answer) > limit:
                    raise TooLarge(f"{url} sent more than {limit} bytes")
            return response.status, bytes(answer)

    @asynccontextmanager
    async def stream(self, method: bytes, url: str, headers: list[tuple[bytes, bytes]], body: bytes, timeouts: Timeouts) -> AsyncIterator[Response]:
        """Send `method` with `body` to `url`; yields the response once its headers are in, then its body is read from it.

        `headers` must not hold Host or Content-Length (both are set here).
        """
        parts = urlsplit(url)
        origin = self._origin(*_origin_key(parts))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = _encode(method, target, [(b"host", parts.netloc.encode()), *headers, (b"content-length", str(len(body)).encode())], body)
        connection, response = await self._send(origin, request, timeouts)
        try:
            yield response
        except BaseException:
            connection.close()  # cancelled or failed mid-answer: never hand half a response to the next call
            raise
        self._release(origin, connection)

    def _origin(self, host: str, port: int, tls: bool) -> _Origin:
        key = (host, port, tls)
        if (origin := self._origins.get(key)) is None:
            origin = self._origins[key] = _Origin(host, port, tls)
        return origin

    async def _send(self, origin: _Origin, request: bytes, timeouts: Timeouts) -> tuple[_Connection, Response]:
        """Send on a kept-alive connection, or a new one, and wait for the answer's headers.

        Never sent twice: a connection the peer closed while idle is gone from the
        pool by then, and idle ones expire before our servers close them.
        """
        connection = await self._acquire(origin, timeouts)
        try:
            response = connection.send(request)
            await _headers(response, timeouts.read)
        except BaseException:
            connection.close()
            raise
        return connection, response

    async def _acquire(self, origin: _Origin, timeouts: Timeouts) -> _Connection:
        deadline = time.monotonic() + timeouts.pool
        while True:
            if (connection := self._idle(origin)) is not None:
                return connection
            if origin.open < self._max:
                return await self._connect(origin, timeouts.connect)
            waiter = asyncio.get_running_loop().create_future()
            origin.waiting.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - time.monotonic()))  # none left: TimeoutError at once
            except TimeoutError:
                raise PoolTimeout(f"all {self._max} connections stayed busy") from None
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    origin.wake_one()  # the turn this call was given passes to the next one
                raise

    def _idle(self, origin: _Origin) -> _Connection | None:
        """The most recently used live idle connection; expired ones are closed on the way."""
        now = time.monotonic()
        while origin.idle:
            connection = origin.idle.pop()
            if not connection.closed and now - connection.idle_since < self._expiry:
                return connection
            connection.close()
        return None

    async def _connect(self, origin: _Origin, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        origin.open += 1
        connection = _Connection(origin)
        try:
            async with asyncio.timeout(timeout):
                transport, _ = await loop.create_connection(lambda: connection, origin.host, origin.port, ssl=client_context() if origin.tls else None)
        except TimeoutError:
            origin.forget(connection)
            raise ReadTimeout(f"could not connect to {origin.host}:{origin.port} within {timeout:.1f} s") from None
        except OSError as exc:
            origin.forget(connection)
            raise Unreachable(f"could not connect to {origin.host}:{origin.port} ({exc})") from exc
        connection.connection_made(transport)  # uvloop may not have called it yet when create_connection returns
        return connection

    def _release(self, origin: _Origin, connection: _Connection) -> None:
        if not connection.done() or self._origins.get((origin.host, origin.port, origin.tls)) is not origin:
            connection.close()  # half read, or its origin was dropped meanwhile: nobody would take it again
            return
        if origin.waiting:  # a queued call takes it at once
            connection.idle_since = time.monotonic()
            origin.idle.append(connection)
            origin.wake_one()
            return
        if len(origin.idle) >= self._max_idle:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        origin.idle.append(connection)
        self._sweep_later()

    def _sweep_later(self) -> None:
        """Close idle connections as they expire, also in a pool nobody uses again.

        Otherwise one is closed only when its origin is next used, or by the
        peer's server at its own keep-alive end: while a mesh of 100 meets,
        each peer fetches 99 cards once, and held 99 idle sockets that long.
        """
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._expiry, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        for key, origin in list(self._origins.items()):
            for connection in [c for c in origin.idle if now - c.idle_since >= self._expiry]:
                connection.close()
            if origin.open == 0 and not origin.waiting:
                del self._origins[key]  # nothing left to it: its entry goes too, so a long-lived pool stays small
        if any(origin.idle for origin in self._origins.values()):
            self._sweep_later()


def _origin_key(parts: SplitResult) -> tuple[str, int, bool]:
    """(host, port, tls) of a URL: the connections to one are interchangeable."""
    tls = parts.scheme == "https"
    return parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80), tls


async def _headers(response: Response, timeout: float) -> None:
    while not response.status:
        await response.wait(timeout)


def _encode(method: bytes, target: str, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    lines = [method + b" " + target.encode() + b" HTTP/1.1"]
    lines.extend(name + b": " + value for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
