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

from federation.card import PeerCard, verify_card
from federation.const import CARD_FETCH_TIMEOUT_SECONDS, CARD_PATH, MAX_CARD_BYTES
from federation.errors import CardError, PeerError
from federation.http1 import ConnectionPool, HttpError, PoolTimeout, ReadTimeout, Timeouts, TooLarge
from federation.proof import MeshKeys, ProofError, prove
from federation.urls import base_url, serves_at

__all__ = ["CARD_TIMEOUTS", "Member", "RejectionLog", "Rejected", "discovery_client", "fetch_card"]

logger = logging.getLogger("federation.discovery")

_LOGGED_LIMIT = 4096


class Rejected(PeerError):
    """A would-be peer was not admitted. `retry`: worth trying again later (unreachable, slow)."""

    def __init__(self, reason: str, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry = retry


CARD_TIMEOUTS = Timeouts(connect=CARD_FETCH_TIMEOUT_SECONDS, read=CARD_FETCH_TIMEOUT_SECONDS, pool=CARD_FETCH_TIMEOUT_SECONDS)
"""Each step of a card fetch or a membership proof; `fetch_card` also bounds the whole at `CARD_FETCH_TIMEOUT_SECONDS`."""


_CARD_KEEPALIVE_SECONDS = 5.0
"""An idle connection discovery fetched a card on is closed after this: the membership proof's second step and a prompt
re-fetch reuse it, and a mesh that just met does not hold a socket to every peer."""


def discovery_client(keepalive: float = _CARD_KEEPALIVE_SECONDS) -> ConnectionPool:
    """The connections discovery fetches cards on (`async with` closes them): lean HTTP/1.1, `federation.http1`.

    Each peer fetches every other's card while a mesh forms (N² fetches), and
    httpx cost ~0.7 ms of CPU a request against ~0.1 ms here. One connection
    per origin does (a fetch or a proof at a time), two let a ping pass a fetch
    (`federation.discovery.health` shares its pool). A card is fetched once, so
    an idle connection closes after `keepalive` seconds (the health monitor keeps
    its pings' longer, as long as a peer's server would). Like every client of a peer it
    uses no proxy, follows no redirect and sends no credential (see `federation.proof`).
    """
    return ConnectionPool(max_per_origin=2, max_idle_per_origin=1, keepalive_expiry=keepalive)


async def _get_body(http: ConnectionPool, url: str) -> bytes:
    """The card of a peer outside any mesh secret (open on loopback): a plain GET."""
    try:
        status, body = await http.fetch(b"GET", url, [], CARD_TIMEOUTS, limit=MAX_CARD_BYTES)
    except TooLarge as exc:
        raise Rejected("bad-response", f"GET {url} sent more than {MAX_CARD_BYTES} bytes; not a card") from exc
    if status != 200:
        raise Rejected("bad-response", f"GET {url} answered HTTP {status}", retry=True)
    return body


@dataclass(frozen=True)
class Member:
    """What a member needs to prove itself to others: its id and the keys derived from the mesh secret."""

    peer_id: str
    keys: MeshKeys


async def _card_body(http: ConnectionPool, url: str, member: Member | None, expected_id: str | None, check_address: bool) -> tuple[str | None, bytes]:
    """(the proven responder id or None outside a secret mesh, the card body), within the fetch deadline."""
    try:
        with anyio.fail_after(CARD_FETCH_TIMEOUT_SECONDS):
            if member is None:
                return None, await _get_body(http, base_url(url) + CARD_PATH)
            return await prove(
                http, url, timeouts=CARD_TIMEOUTS, keys=member.keys, own_id=member.peer_id, expected_id=expected_id, check_address=check_address, card_limit=MAX_CARD_BYTES
            )
    except ProofError as exc:
        raise Rejected("bad-response" if exc.reason == "malformed" else exc.reason, str(exc), retry=exc.reason == "no-proof") from exc
    except TimeoutError as exc:
        raise Rejected("timeout", f"{url} did not answer within {CARD_FETCH_TIMEOUT_SECONDS:g} s", retry=True) from exc
    except (ReadTimeout, PoolTimeout) as exc:
        raise Rejected("timeout", f"{url} timed out ({exc})", retry=True) from exc
    except HttpError as exc:
        raise Rejected("unreachable", f"cannot fetch {url}: {exc}", retry=True) from exc


async def fetch_card(
    http: ConnectionPool,
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
