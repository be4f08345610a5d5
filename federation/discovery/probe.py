"""A lean keep-alive `GET /health` for plain-HTTP peers: the health monitor's hot path.

Every peer pings every other once a second, so a ping's CPU cost multiplies
by N² on a machine running many peers. Measured here (2 cores, one peer
answering, 2000 sequential pings on one kept-alive connection): httpx costs
0.74 ms of client CPU per ping and the peer 0.21 ms; this probe 0.08 ms and
the peer 0.10 ms (fewer headers to parse): ~5x less in all
(`python -m bench.discovery` measures it again). With httpx, 50 peers on
one 2-core machine could not keep up with their own pings.

So this sends a fixed request (plus any headers the caller adds: the
liveness news, rumours.py) on a held connection and reads back a
status line, headers and a `Content-Length` body (what uvicorn always sends
for `/health`), nothing more. Anything unexpected (chunked, no length, too
big, a reset) closes the connection and counts as a failed ping; the next
ping reconnects. HTTPS peers go through httpx instead.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["HealthProbe", "ProbeError"]

_MAX_HEAD = 8192
_MAX_BODY = 64 * 1024


class ProbeError(Exception):
    """The ping got no usable answer (connection refused or reset, malformed or non-200 reply)."""


class HealthProbe:
    """One kept-alive connection to one peer's `/health`; `await probe.get()` returns the JSON."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"HealthProbe speaks plain http only, not {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._head = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode("latin-1")
        self._stream: SocketStream | None = None
        self._reader: BufferedByteReceiveStream | None = None

    async def get(self, headers: dict[str, str] | None = None) -> object:
        """The parsed JSON body of one ping (the caller sets the deadline), `headers` sent along; raises `ProbeError`."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        request = self._head + extra.encode("latin-1") + b"\r\n"
        try:
            if self._stream is None:
                self._stream = await anyio.connect_tcp(self._host, self._port)
                self._reader = BufferedByteReceiveStream(self._stream)
            assert self._reader is not None
            await self._stream.send(request)
            head = await self._reader.receive_until(b"\r\n\r\n", _MAX_HEAD)
            body = await self._reader.receive_exactly(_content_length(head))
            return json.loads(body)
        except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, anyio.IncompleteRead, anyio.DelimiterNotFound, ValueError) as exc:
            await self.aclose()
            raise ProbeError(str(exc) or exc.__class__.__name__) from exc
        except BaseException:  # a bad reply, or cancelled mid-exchange: the connection is in an unknown state
            await self.aclose()
            raise

    async def aclose(self) -> None:
        stream, self._stream, self._reader = self._stream, None, None
        if stream is not None:
            with anyio.CancelScope(shield=True):
                await stream.aclose()


def _content_length(head: bytes) -> int:
    status, *headers = head.split(b"\r\n")
    if status[9:12] != b"200":
        raise ProbeError(f"answered {status[:40]!r}")
    for header in headers:
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
            if not 0 <= length <= _MAX_BODY:
                raise ProbeError(f"a {length}-byte health reply is not plausible")
            return length
    raise ProbeError("the reply has no Content-Length")
