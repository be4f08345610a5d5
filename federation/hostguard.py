"""`HostGuard`: every route of a peer or relay answers only requests addressed to it (DNS rebinding).

A web page on `evil.example` whose name the attacker re-points at
127.0.0.1 (or at a LAN address) makes the victim's browser talk to a peer
as if it were `evil.example`: the browser sends `Host: evil.example` and
lets the page read the answers, since to the browser it is the page's own
origin. So every route (not only `/mcp`, whose check the MCP SDK would do
alone: `/peers`, `/events`, `/metrics` and the card leak as much) refuses
a Host that is not a name this server is reached by, with 421, and an
Origin of a page that is not this server's, with 403.

Allowed Host values (any port):
- any IP address literal. DNS rebinding needs a name the attacker
  controls; a browser addressing an IP sends that IP, and a page can only
  be that IP's origin if it was served from it. This covers the bind
  address, every address a peer bound to 0.0.0.0 advertises (even when the
  machine's addresses change), port-mapped containers and relay tunnels
  (whose requests are handed to the peer's app as addressed to its own
  address, see `relay/peer_end.py`);
- `localhost`, this machine's host name (short, full, `<short>.local`),
  the bound name if `--host` is one, a relay's `--public-url` name;
- the names given with `--allowed-host` (a reverse proxy's public name, a
  Docker service name); `--allowed-host '*'` turns the check off.

An Origin (sent by browsers only) must have the request's own host, an
allowed name, or a loopback address (a browser client such as the MCP
Inspector running on this machine): an IP address is allowed as Host, not
as any page's Origin. `null` is refused. Requests without Origin (every non-browser client) pass.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from federation.refusal import refuse
from federation.settings import is_loopback

__all__ = ["HOST_REFUSED_CODE", "HostGuard", "machine_names"]

HOST_REFUSED_CODE = -32043
"""JSON-RPC error code of a request refused for its Host (421) or Origin (403)."""

_ANY = "*"
_VERDICTS_KEPT = 1024
"""(Host, Origin) pairs whose verdict is remembered; past that the memory starts over (a flood of made-up Hosts must not grow it)."""


def machine_names(bind_host: str) -> list[str]:
    """The names this machine is reached by without configuration: localhost, its host name forms, a bound name."""
    full = socket.gethostname().lower()
    short = full.split(".")[0]
    names = ["localhost", full, short, f"{short}.local"]
    if not _is_ip(bind_host):
        names.append(bind_host.lower())
    return list(dict.fromkeys(names))


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _hostname(netloc: str) -> str | None:
    """The lower-case host of a Host header value (`[::1]:8801` -> `::1`), None if it has none."""
    try:
        return urlsplit(f"//{netloc}").hostname or None
    except ValueError:  # an unbalanced bracket
        return None


def _decoded(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


class HostGuard:
    """ASGI middleware: HTTP and WebSocket requests with a foreign Host (421) or Origin (403) are refused."""

    def __init__(self, app: ASGIApp, *, names: Iterable[str]) -> None:
        self.app = app
        self._names = frozenset(name.strip().lower().strip("[]") for name in names if name.strip())
        self._verdicts: dict[tuple[bytes | None, bytes | None], tuple[int, str, str] | None] = {}
        """`_problem` per raw (Host, Origin): a peer sees the same few pairs on every request, and parsing them cost ~9 µs."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or _ANY in self._names:
            await self.app(scope, receive, send)
            return
        problem = self._verdict(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, reason, message = problem
        await refuse(scope, send, status, message, code=HOST_REFUSED_CODE, data={"reason": reason})

    def _verdict(self, scope: Scope) -> tuple[int, str, str] | None:
        host = origin = None
        for key, value in scope["headers"]:
            if key == b"host" and host is None:
                host = value
            elif key == b"origin" and origin is None:
                origin = value
        pair = (host, origin)
        try:
            return self._verdicts[pair]
        except KeyError:
            pass
        if len(self._verdicts) >= _VERDICTS_KEPT:
            self._verdicts.clear()
        verdict = self._verdicts[pair] = self._problem(_decoded(host), _decoded(origin))
        return verdict

    def _allowed(self, name: str) -> bool:
        return name in self._names or _is_ip(name)

    def _problem(self, host: str | None, origin: str | None) -> tuple[int, str, str] | None:
        """(status, reason, message) when Host or Origin is foreign, else None."""
        hostname = _hostname(host) if host else None
        if hostname is None or not self._allowed(hostname):
            what = f"Host {host!r} is not a name this server is reached by" if host else "the request has no Host header"
            return (
                421,
                "host_not_allowed",
                (
                    f"421 misdirected request: {what} (DNS rebinding protection). "
                    "Use its IP address or localhost, or start it with --allowed-host NAME for a name that points here."
                ),
            )
        if origin is None:
            return None
        origin_host = _hostname(urlsplit(origin).netloc) if "://" in origin else None
        if origin_host is not None and (origin_host == hostname or origin_host in self._names or is_loopback(origin_host)):
            return None
        return (
            403,
            "origin_not_allowed",
            (
                f"403 forbidden: a web page from Origin {origin!r} may not call this server (only pages of this server's own "
                "address or of localhost may). Call it from outside a browser, or start it with --allowed-host NAME for that page's host."
            ),
        )
