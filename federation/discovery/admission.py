"""Turning an address someone claims is a peer into a verified card, or a reason why not.

mDNS announcements and `--peer` URLs are only hints. Before a peer enters the
table its `/peer` is fetched (bounded in time and size), the card's signature
and `id == hash(pubkey)` are checked, then that it is the peer that was
announced, in our mesh, at the address we fetched it from. Each failure is a
`Rejected` with a short reason code; `RejectionLog` reports each
(peer, reason) once, so a neighbour that keeps failing cannot flood the log.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import anyio
import httpx

from federation.card import PeerCard, verify_card
from federation.const import CARD_FETCH_TIMEOUT_SECONDS, CARD_PATH, MAX_CARD_BYTES
from federation.errors import CardError, PeerError
from federation.proof import MeshKeys, ProofError, prove
from federation.tls import client_context
from federation.urls import base_url, serves_at

__all__ = ["Member", "RejectionLog", "Rejected", "discovery_client", "fetch_card"]

logger = logging.getLogger("federation.discovery")

_LOGGED_LIMIT = 4096


class Rejected(PeerError):
    """A would-be peer was not admitted. `retry`: worth trying again later (unreachable, slow)."""

    def __init__(self, reason: str, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry = retry


def discovery_client() -> httpx.AsyncClient:
    """The HTTP client discovery uses: keep-alive, bounded timeouts, no proxies, and no credential (see `federation.proof`)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(CARD_FETCH_TIMEOUT_SECONDS),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=128),
        trust_env=False,  # a LAN peer must never be fetched through an HTTP proxy
        verify=client_context(),
        follow_redirects=False,
    )


async def _get_body(http: httpx.AsyncClient, url: str) -> bytes:
    """The card of a peer outside any mesh secret (open on loopback): a plain GET."""
    async with http.stream("GET", url) as response:
        if response.status_code != 200:
            raise Rejected("bad-response", f"GET {url} answered HTTP {response.status_code}", retry=True)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_CARD_BYTES:
                raise Rejected("bad-response", f"GET {url} sent more than {MAX_CARD_BYTES} bytes; not a card")
        return bytes(body)


@dataclass(frozen=True)
class Member:
    """What a member needs to prove itself to others: its id and the keys derived from the mesh secret."""

    peer_id: str
    keys: MeshKeys


async def _card_body(http: httpx.AsyncClient, url: str, member: Member | None, expected_id: str | None, check_address: bool) -> tuple[str | None, bytes]:
    """(the proven responder id or None outside a secret mesh, the card body), within the fetch deadline."""
    try:
        with anyio.fail_after(CARD_FETCH_TIMEOUT_SECONDS):
            if member is None:
                return None, await _get_body(http, base_url(url) + CARD_PATH)
            return await prove(
                http, url, keys=member.keys, own_id=member.peer_id, expected_id=expected_id, check_address=check_address, card_limit=MAX_CARD_BYTES
            )
    except ProofError as exc:
        raise Rejected("bad-response" if exc.reason == "malformed" else exc.reason, str(exc), retry=exc.reason == "no-proof") from exc
    except TimeoutError as exc:
        raise Rejected("timeout", f"{url} did not answer within {CARD_FETCH_TIMEOUT_SECONDS:g} s", retry=True) from exc
    except httpx.TimeoutException as exc:
        raise Rejected("timeout", f"{url} timed out ({exc.__class__.__name__})", retry=True) from exc
    except httpx.HTTPError as exc:
        raise Rejected("unreachable", f"cannot fetch {url}: {exc.__class__.__name__} {exc}".strip(), retry=True) from exc


async def fetch_card(
    http: httpx.AsyncClient,
    url: str,
    *,
    mesh: str | None,
    member: Member | None = None,
    expected_id: str | None = None,
    check_address: bool = False,
) -> PeerCard:
    """Get `url`'s card and check it: membership proof, signature, id, mesh, and (`check_address`) that it is served where signed.

    In a mesh with a secret (`member`) the card comes only at the end of the
    membership proof (`federation.proof`), and must carry the id that proved
    itself. `check_address` stops a neighbour from replaying a real peer's
    card, or forwarding its proof, from its own address to draw that peer's calls.
    """
    proven, body = await _card_body(http, url, member, expected_id, check_address)
    try:
        card = verify_card(body)
    except CardError as exc:
        raise Rejected("bad-card", str(exc)) from exc
    if proven is not None and card.id != proven:
        raise Rejected("spoofed-id", f"member {proven!r} proved itself at {url} but handed over the card of {card.id!r}")
    if expected_id is not None and card.id != expected_id:
        raise Rejected("spoofed-id", f"announced as peer {expected_id!r} but {url} serves the card of {card.id!r}")
    if card.mesh != mesh:
        raise Rejected("other-mesh", f"peer {card.id!r} belongs to mesh {card.mesh!r}, not ours ({mesh!r})")
    if check_address and not any(serves_at(endpoint, url) for endpoint in card.endpoints):
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
