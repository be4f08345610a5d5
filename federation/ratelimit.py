"""`RateLimit`: each caller gets a token bucket on `/mcp`; past it, 429 with `Retry-After`.

Who is a caller: the mesh credential is one secret shared by every member,
so it names no peer; the caller is the address the request came from. A
request that came through a relay tunnel has no socket address on the peer
(the node's app serves it in-process, see `relay/peer_end.py`), so its caller
is the client address the relay reports in the last `X-Forwarded-For` (the
relay appends it; a client's own `X-Forwarded-For` comes before it and is
ignored, and on a direct connection the header is never read). When peers
carry a credential of their own, its verified peer id is the natural key;
`caller_of` is the one place to change. (uvicorn itself takes the client
address from `X-Forwarded-For` on connections from 127.0.0.1, its default
`forwarded_allow_ips`: a reverse proxy on the same machine, such as Caddy in
front of a relay, passes its clients' addresses on that way.)

A peer forwarding calls for its users is one caller at the next peer (its
address), so the default (`const.DEFAULT_RATE_LIMIT`, 1000/s) is sized
for a forwarding peer's whole traffic, bursts included: it caps floods,
not use. Every HTTP request to the path counts (a legacy MCP session
spends three on its start).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from federation.membership import proven_peer
from federation.refusal import refuse

__all__ = ["RATE_LIMITED_CODE", "Rate", "RateLimit", "caller_of"]

RATE_LIMITED_CODE = -32044
"""JSON-RPC error code of a request refused by the rate limit (429)."""

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*")
_MAX_CALLERS = 10_000
"""Buckets kept before idle (full) ones are dropped: callers come and go, memory must not grow with them."""


@dataclass(frozen=True)
class Rate:
    """Requests per second, and how many may come at once (the bucket's size); `text` as the user wrote it."""

    per_second: float
    burst: int
    text: str

    @classmethod
    def parse(cls, text: str, burst: int | None = None) -> Rate | None:
        """`20/s`, `600/m`, `5000/h` (None for `off`); `burst` defaults to two seconds' worth, at least 1.

        Raises ValueError saying how to write it.
        """
        if text.strip().lower() in ("off", "none", "0"):
            return None
        match = _RATE.fullmatch(text.lower())
        if match is None or match.group(2) not in _UNITS or float(match.group(1)) <= 0:
            raise ValueError(f"a rate limit looks like 20/s, 600/m or 5000/h (or 'off'), not {text!r}")
        count, unit = match.groups()
        per_second = float(count) / _UNITS[unit]
        return cls(per_second, burst if burst is not None else max(1, math.ceil(2 * per_second)), f"{count}/{unit}")

    def __str__(self) -> str:
        return f"{self.text} (burst {self.burst})"


@dataclass
class _Bucket:
    tokens: float
    updated: float = field(default_factory=time.monotonic)


def caller_of(scope: Scope) -> str:
    """Who a request counts against: the peer its token proves, else its socket address, or for a relayed request the address the relay saw."""
    if peer := proven_peer(scope):
        return f"peer {peer}"
    if client := scope.get("client"):
        return str(client[0])
    forwarded = [value for key, value in scope["headers"] if key == b"x-forwarded-for"]
    if forwarded:
        last: bytes = forwarded[-1]
        return last.decode("latin-1").rsplit(",", 1)[-1].strip() + " (via relay)"
    return "relay tunnel"


class RateLimit:
    """ASGI middleware: requests to `path` beyond `rate` per caller get a JSON-RPC 429 with Retry-After."""

    def __init__(self, app: ASGIApp, *, rate: Rate | None, path: str) -> None:
        self.app = app
        self._rate = rate
        self._path = path
        self._buckets: dict[str, _Bucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._rate is None or scope["type"] != "http" or scope["path"] != self._path:
            await self.app(scope, receive, send)
            return
        caller = caller_of(scope)
        wait = self._take(caller, self._rate)
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        message = (
            f"429 too many requests: {caller} sent more than {self._rate} requests to {self._path}; "
            f"retry in {wait:.2f} s (the peer's --rate-limit)."
        )
        data = {"reason": "rate_limited", "caller": caller, "retry_after_s": round(wait, 3)}
        await refuse(scope, send, 429, message, code=RATE_LIMITED_CODE, data=data, headers=[(b"retry-after", str(math.ceil(wait)).encode())])

    def _take(self, caller: str, rate: Rate) -> float:
        """Take a token for `caller`: 0 if there was one, else the seconds until there is."""
        now = time.monotonic()
        bucket = self._buckets.get(caller)
        if bucket is None:
            self._forget_idle(now, rate)
            bucket = self._buckets[caller] = _Bucket(float(rate.burst), now)
        bucket.tokens = min(float(rate.burst), bucket.tokens + (now - bucket.updated) * rate.per_second)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / rate.per_second

    def _forget_idle(self, now: float, rate: Rate) -> None:
        """Past `_MAX_CALLERS` buckets, drop those that have refilled: forgetting them changes nothing."""
        if len(self._buckets) < _MAX_CALLERS:
            return
        full_after = rate.burst / rate.per_second
        self._buckets = {key: b for key, b in self._buckets.items() if now - b.updated < full_after}
