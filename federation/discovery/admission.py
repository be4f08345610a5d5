"""Turning an address someone claims is a peer into a verified card, or a reason why not.

mDNS announcements and `--peer` URLs are only hints. Before a peer enters the
table its `/peer` is fetched (bounded in time and size), the card's signature
and `id == hash(pubkey)` are checked, then that it is the peer that was
announced, in our mesh, at the address we fetched it from. Each failure is a
`Rejected` with a short reason code; `RejectionLog` reports each
(peer, reason) once, so a neighbour that keeps failing cannot flood the log.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import OrderedDict
from urllib.parse import urlsplit

import anyio
import httpx

from federation.card import PeerCard, verify_card
from federation.const import CARD_FETCH_TIMEOUT_SECONDS, CARD_PATH, MAX_CARD_BYTES
from federation.errors import CardError, PeerError
from federation.membership import auth_headers
from federation.settings import PeerSettings
from federation.urls import base_url

__all__ = ["RejectionLog", "Rejected", "discovery_client", "fetch_card"]

logger = logging.getLogger("federation.discovery")

_LOGGED_LIMIT = 4096


class Rejected(PeerError):
    """A would-be peer was not admitted. `retry`: worth trying again later (unreachable, slow)."""

    def __init__(self, reason: str, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry = retry


def discovery_client(settings: PeerSettings) -> httpx.AsyncClient:
    """The HTTP client discovery uses: keep-alive, bounded timeouts, no proxies, the mesh credential."""
    return httpx.AsyncClient(
        headers=auth_headers(settings),
        timeout=httpx.Timeout(CARD_FETCH_TIMEOUT_SECONDS),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=128),
        trust_env=False,  # a LAN peer must never be fetched through an HTTP proxy
        follow_redirects=False,
    )


async def _get_body(http: httpx.AsyncClient, url: str) -> bytes:
    try:
        with anyio.fail_after(CARD_FETCH_TIMEOUT_SECONDS):
            async with http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise Rejected("bad-response", f"GET {url} answered HTTP {response.status_code}", retry=True)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_CARD_BYTES:
                        raise Rejected("bad-response", f"GET {url} sent more than {MAX_CARD_BYTES} bytes; not a card")
                return bytes(body)
    except TimeoutError as exc:
        raise Rejected("timeout", f"GET {url} did not answer within {CARD_FETCH_TIMEOUT_SECONDS:g} s", retry=True) from exc
    except httpx.TimeoutException as exc:
        raise Rejected("timeout", f"GET {url} timed out ({exc.__class__.__name__})", retry=True) from exc
    except httpx.HTTPError as exc:
        raise Rejected("unreachable", f"cannot fetch {url}: {exc.__class__.__name__} {exc}".strip(), retry=True) from exc


def _serves_at(card: PeerCard, url: str) -> bool:
    """The signed endpoints name `url` (an unspecified bind address matches any host on its port and path)."""
    wanted = urlsplit(url)
    for endpoint in card.endpoints:
        signed = urlsplit(endpoint)
        if (signed.port, signed.path.rstrip("/")) != (wanted.port, wanted.path.rstrip("/")):
            continue
        if signed.hostname == wanted.hostname:
            return True
        try:
            if signed.hostname and ipaddress.ip_address(signed.hostname).is_unspecified:
                return True
        except ValueError:
            continue
    return False


async def fetch_card(
    http: httpx.AsyncClient,
    url: str,
    *,
    mesh: str | None,
    expected_id: str | None = None,
    check_address: bool = False,
) -> PeerCard:
    """Fetch `url`'s card and check it: signature, id, mesh, and (`check_address`) that it is served where signed.

    `check_address` stops a neighbour from replaying a real peer's card from
    its own address to draw that peer's calls.
    """
    body = await _get_body(http, base_url(url) + CARD_PATH)
    try:
        card = verify_card(body)
    except CardError as exc:
        raise Rejected("bad-card", str(exc)) from exc
    if expected_id is not None and card.id != expected_id:
        raise Rejected("spoofed-id", f"announced as peer {expected_id!r} but {url} serves the card of {card.id!r}")
    if card.mesh != mesh:
        raise Rejected("other-mesh", f"peer {card.id!r} belongs to mesh {card.mesh!r}, not ours ({mesh!r})")
    if check_address and not _serves_at(card, url):
        raise Rejected("address-mismatch", f"peer {card.id!r} card is served from {url}, which its signed endpoints {card.endpoints} do not name")
    return card


class RejectionLog:
    """Logs each (subject, reason) once; remembers a bounded number of them.

    `owner` (the observing peer's name) starts each line, for processes that run several peers.
    """

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._logged: OrderedDict[tuple[str, str], None] = OrderedDict()

    def report(self, subject: str, reason: str, message: str, *, level: int = logging.WARNING) -> None:
        key = (subject, reason)
        if key in self._logged:
            return
        self._logged[key] = None
        if len(self._logged) > _LOGGED_LIMIT:
            self._logged.popitem(last=False)
        logger.log(level, "%s: not admitting %s (%s): %s", self._owner, subject, reason, message)

    def forget(self, subject: str) -> None:
        """`subject` was admitted or went away: report its next failure again."""
        for key in [key for key in self._logged if key[0] == subject]:
            del self._logged[key]
