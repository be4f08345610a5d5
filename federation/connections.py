"""Connection limits uvicorn lacks: a deadline for request headers, and a cap on connections per address.

uvicorn times out only idle keep-alive connections; with httptools a client
that sends half a request line (or nothing) holds its connection, and a
file descriptor, forever: 1,100 such connections took a peer from 18 to
1,118 open files. `LimitedHttpProtocol` is uvicorn's httptools protocol
with two additions, at the protocol level (below ASGI, so they hold for
every route and for WebSocket handshakes alike):

- header timeout: a request's headers must be complete within
  `header_timeout` seconds of its first byte (or, for a connection's first
  request, of the connection). Otherwise the server answers 408 and closes.
  Idle time between requests stays uvicorn's keep-alive timeout.
- per-address cap: a connection from an address that already holds
  `max_per_address` open connections (HTTP or WebSocket) is answered 503
  and closed at once, so one address cannot take every file descriptor
  while others are still served. 0 turns the cap off.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import resource
from dataclasses import dataclass
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from federation.const import HEADER_TIMEOUT_SECONDS, MAX_CONNECTIONS_PER_ADDRESS
from federation.refusal import error_body

__all__ = ["CONNECTION_LIMIT_CODE", "ConnectionLimits", "open_file_limit", "protocol_for"]

CONNECTION_LIMIT_CODE = -32045
"""JSON-RPC error code of a connection closed by a limit here: the per-address cap (503) or the header timeout (408)."""


@dataclass(frozen=True)
class ConnectionLimits:
    """How long request headers may take, and how many connections one address may hold (0: no cap)."""

    header_timeout: float = HEADER_TIMEOUT_SECONDS
    max_per_address: int = MAX_CONNECTIONS_PER_ADDRESS


def open_file_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit, and return the limit it now has.

    A relay holds a session for every pair of peers that meet through it, so
    a default soft limit (often 1,024) runs out at ~30 peers on one host.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if wanted > soft:
        with contextlib.suppress(ValueError, OSError):  # not allowed here: keep what we have
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _plain_response(status: bytes, message: str, code: int, reason: str, *extra: bytes) -> bytes:
    """A whole HTTP/1.1 response with a JSON-RPC error body, written before any request was served."""
    body = error_body(message, code=code, data={"reason": reason})
    head = [b"HTTP/1.1 " + status, b"content-type: application/json", b"content-length: " + str(len(body)).encode(), b"connection: close", *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _address(protocol: object) -> str | None:
    """The client address of one of uvicorn's connections, HTTP or WebSocket."""
    client = getattr(protocol, "client", None)
    return str(client[0]) if client else None


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and a per-address connection cap (module docstring)."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._over_cap():
            self._refuse_busy()
            return
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._arm_header_deadline()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def _over_cap(self) -> bool:
        cap = self._limits.max_per_address
        if not cap or self.client is None:
            return False
        address = self.client[0]
        held = sum(1 for other in self.connections if other is not self and _address(other) == address)
        return held >= cap

    def _refuse_busy(self) -> None:
        cap = self._limits.max_per_address
        message = (
            f"503 too many connections: {self.client[0] if self.client else 'this address'} already holds {cap} open connections "
            "to this server (its --max-connections-per-address); reuse connections or close idle ones, then retry."
        )
        self.transport.write(_plain_response(b"503 Service Unavailable", message, CONNECTION_LIMIT_CODE, "too_many_connections", b"retry-after: 1"))
        self.transport.close()

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None and self._limits.header_timeout > 0:
            self._header_deadline = self.loop.call_later(self._limits.header_timeout, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # nothing of ours is being sent on this connection
            message = (
                f"408 request timeout: the request headers did not arrive within {self._limits.header_timeout:g} s "
                "(the server's --header-timeout); send the whole request at once."
            )
            self.transport.write(_plain_response(b"408 Request Timeout", message, CONNECTION_LIMIT_CODE, "header_timeout"))
        self.transport.close()


def protocol_for(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The `http` protocol to give uvicorn's Config: it constructs one per connection with these limits."""
    return cast("type[asyncio.Protocol]", functools.partial(LimitedHttpProtocol, limits=limits))
