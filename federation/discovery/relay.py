"""A peer's links to relays: reachable from anywhere, and seeing the mesh beyond the LAN.

`RelayLinks(relays, peers=..., parts=...)` is a node service, handed the
peer table and the parts of the node a link uses (`LinkParts`), not the
whole `Node`. For each relay in `settings.relays` it keeps one outbound WebSocket (the tunnel): check that
the relay is a member (`federation.proof`, before it is sent anything that
carries a credential), dial with a peer token addressed to it, prove the
key, publish the card, then serve relayed requests with the node's own
app (`federation.relay.peer_end`). A lost or refused link is retried with
jittered backoff (0.1 s doubling to 1.5 s), so a restarted relay has its
peers back within about 2 s; the first failure is logged, repeats are not,
and the peer keeps serving locally throughout. The card is re-published
whenever its digest changes.

While a link is up the peer also reads the relay's `/peers` every
`RELAY_DIRECTORY_SECONDS` and admits each verified card of the mesh into the
peer table as `via="relay"` at `<relay>/p/<id>/mcp`. With several relays the
listings are merged: a peer stays routed while any relay lists it, and a
direct route (mDNS, static) still wins, as the peer table prefers it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
from anyio.abc import TaskGroup
from starlette.types import ASGIApp
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from federation.card import PeerCard, verify_card
from federation.const import (
    PEERS_PATH,
    RELAY_BACKOFF_FIRST_SECONDS,
    RELAY_BACKOFF_MAX_SECONDS,
    RELAY_CONNECT_SECONDS,
    RELAY_DIRECTORY_SECONDS,
    RELAYED_PREFIX,
    TUNNEL_PATH,
)
from federation.discovery.admission import CARD_TIMEOUTS, Member, discovery_client
from federation.errors import CardError
from federation.http1 import HttpError
from federation.identity import Identity
from federation.peers import PeerTable
from federation.proof import ProofError, Tokens, prove
from federation.refusal import error_message
from federation.relay.frames import FrameError
from federation.relay.peer_end import PeerEnd, TunnelRefused, handshake
from federation.tls import client_context, verify_hint

__all__ = ["LinkParts", "RelayDirectory", "RelayLinks", "relayed_url"]

logger = logging.getLogger(__name__)

_SLACK_BYTES = 64 * 1024
_PROVEN_ANSWER_BYTES = 4096


def relayed_url(relay: str, peer_id: str) -> str:
    """Where `relay` serves `peer_id`'s MCP endpoint."""
    return f"{relay}{RELAYED_PREFIX}{peer_id}/mcp"


def _tunnel_url(relay: str) -> str:
    parts = urlsplit(relay)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path}{TUNNEL_PATH}"


class RelayDirectory:
    """What each relay lists, merged into the peer table as `via="relay"` routes."""

    def __init__(self, peers: PeerTable) -> None:
        self._peers = peers
        self._listed: dict[str, dict[str, PeerCard]] = {}  # relay -> id -> card

    def update(self, relay: str, cards: dict[str, PeerCard]) -> None:
        before = set(self._listed.get(relay, {}))
        self._listed[relay] = cards
        self._reconcile(before | set(cards))

    def forget(self, relay: str) -> None:
        before = set(self._listed.pop(relay, {}))
        self._reconcile(before)

    def _reconcile(self, peer_ids: set[str]) -> None:
        for peer_id in peer_ids:
            relays = [relay for relay, cards in self._listed.items() if peer_id in cards]
            known = self._peers.get(peer_id)
            if not relays:
                if known is not None and "relay" in known.routes:
                    self._peers.drop_route(peer_id, "relay")
                continue
            current = known.routes.get("relay") if known else None
            relay = next((r for r in relays if relayed_url(r, peer_id) == current), relays[0])
            self._peers.admit(self._listed[relay][peer_id], "relay", relayed_url(relay, peer_id))


@dataclass(frozen=True)
class LinkParts:
    """What a relay link uses of its peer.

    `app` serves relayed requests in-process (the node's whole app, mesh guard
    included); `card` and `url` are read at each attach, as they change (tools,
    a LAN address); `member` proves the relay and mints its tokens (None
    outside a mesh with a secret); `mesh` is the mesh whose listed cards count.
    """

    identity: Identity
    member: Member | None
    app: ASGIApp
    card: Callable[[], PeerCard]
    url: Callable[[], str]
    mesh: str | None
    max_request_bytes: int


class RelayLinks(AbstractAsyncContextManager["RelayLinks"]):
    """Node service: one `_RelayLink` per relay of `relays`, sharing one directory that admits into `peers`."""

    def __init__(self, relays: Sequence[str], *, peers: PeerTable, parts: LinkParts) -> None:
        self._relays = list(relays)
        self._parts = parts
        self.directory = RelayDirectory(peers)
        self._group: TaskGroup | None = None

    async def __aenter__(self) -> RelayLinks:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        for relay in self._relays:
            self._group.start_soon(_RelayLink(self._parts, relay, self.directory).run)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._group is not None
        self._group.cancel_scope.cancel()
        await self._group.__aexit__(exc_type, exc, tb)


class _RelayLink:
    """The tunnel to one relay, kept up for the node's lifetime."""

    def __init__(self, parts: LinkParts, relay: str, directory: RelayDirectory) -> None:
        self._parts = parts
        self._relay = relay
        self._directory = directory
        self._failing = False
        self._attempt = 0
        self._tokens = Tokens(parts.member.keys, parts.member.peer_id) if parts.member else None
        self._relay_id = ""  # proven at each attach

    async def _prove_relay(self) -> None:
        """Learn the relay's id by its membership proof; ProofError if it cannot give one."""
        member = self._parts.member
        if member is None:
            return
        async with discovery_client() as http:
            with anyio.fail_after(RELAY_CONNECT_SECONDS):
                self._relay_id, _ = await prove(
                    http, self._relay, timeouts=CARD_TIMEOUTS, keys=member.keys, own_id=member.peer_id, expected_id=None, check_address=False, card_limit=_PROVEN_ANSWER_BYTES, kind="relay"
                )

    def _credential(self) -> dict[str, str]:
        """A peer token for the relay (never the raw secret), once it proved itself."""
        return self._tokens.headers(self._relay_id) if self._tokens and self._relay_id else {}

    async def run(self) -> None:
        while True:
            try:
                await self._attach()
            except (OSError, TimeoutError, WebSocketException, FrameError, TunnelRefused, ProofError, HttpError) as exc:
                self._report(exc)
            except Exception:  # a bug in one link must not stop the node; it retries like any failure
                logger.exception("relay link to %s failed unexpectedly", self._relay)
            finally:
                self._directory.forget(self._relay)
            delay = min(RELAY_BACKOFF_MAX_SECONDS, RELAY_BACKOFF_FIRST_SECONDS * 2**self._attempt)
            self._attempt = min(self._attempt + 1, 8)
            await anyio.sleep(delay * random.uniform(0.5, 1.0))

    def _report(self, exc: BaseException) -> None:
        """Log the first failure in a row; repeats go to debug so a down relay does not flood the log."""
        if isinstance(exc, InvalidStatus):
            reason = f"HTTP {exc.response.status_code}: {error_message(exc.response.body)}"
        elif isinstance(exc, TunnelRefused):
            reason = f"refused: {exc}"
        elif isinstance(exc, ProofError):
            reason = f"not a member of this mesh: {exc}"
        else:
            reason = verify_hint(exc) or str(exc) or type(exc).__name__
        if self._failing:
            logger.debug("relay %s still unavailable: %s", self._relay, reason)
            return
        self._failing = True
        logger.warning("relay %s unavailable (%s); serving locally and retrying", self._relay, reason)

    async def _attach(self) -> None:
        parts = self._parts
        await self._prove_relay()
        with anyio.fail_after(RELAY_CONNECT_SECONDS):
            connection = await connect(
                _tunnel_url(self._relay),
                additional_headers=self._credential(),
                open_timeout=RELAY_CONNECT_SECONDS,
                max_size=parts.max_request_bytes + _SLACK_BYTES,
                compression=None,
                ping_interval=5,
                ping_timeout=10,
                close_timeout=1,
                ssl=client_context() if self._relay.startswith("https://") else None,
            )
        try:
            card = parts.card()
            with anyio.fail_after(RELAY_CONNECT_SECONDS):
                limits, path = await handshake(connection, parts.identity, card, parts.max_request_bytes)
            self._failing, self._attempt = False, 0
            logger.info("attached to relay %s: reachable at %s%s", self._relay, self._relay, path)
            end = PeerEnd(connection, parts.app, limits, local_netloc=urlsplit(parts.url()).netloc)
            async with anyio.create_task_group() as group:
                group.start_soon(self._keep_card_fresh, end, card.digest())
                group.start_soon(self._sync_directory)
                reason = await end.serve(group)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await connection.close(1001, "the peer is leaving")
        raise ConnectionError(reason)

    async def _keep_card_fresh(self, end: PeerEnd, published: str) -> None:
        while True:
            await anyio.sleep(RELAY_DIRECTORY_SECONDS)
            card = self._parts.card()
            if card.digest() != published:
                await end.publish(card)
                published = card.digest()

    async def _sync_directory(self) -> None:
        """Read the relay's `/peers` every period; an unchanged one (304 to our ETag) keeps the cards verified last time.

        A failed read is retried next period. The first failure in a row is a
        warning with the relay's reason: at debug level, a relay refusing every
        read (its per-address cap full) left a peer listing no one, silently.
        """
        etag, cards, failing = "", {}, False
        async with httpx.AsyncClient(timeout=RELAY_CONNECT_SECONDS, verify=client_context()) as http:
            while True:
                try:
                    response = await http.get(self._relay + PEERS_PATH, headers=self._credential() | ({"If-None-Match": etag} if etag else {}))
                    if response.status_code != 304:
                        if response.is_error:
                            raise ValueError(f"HTTP {response.status_code}: {error_message(response.content)}")
                        cards = _verified_cards(response.json(), self._parts.mesh)
                        etag = response.headers.get("etag", "")
                    self._directory.update(self._relay, cards)
                    failing = False
                except (httpx.HTTPError, ValueError) as exc:
                    level = logging.DEBUG if failing else logging.WARNING
                    logger.log(level, "reading %s%s failed (%s); retrying every %g s", self._relay, PEERS_PATH, exc, RELAY_DIRECTORY_SECONDS)
                    failing = True
                await anyio.sleep(RELAY_DIRECTORY_SECONDS)


def _verified_cards(listing: Any, mesh: str | None) -> dict[str, PeerCard]:
    """The cards of peers attached to this relay that verify and belong to our mesh."""
    cards: dict[str, PeerCard] = {}
    entries = listing.get("peers", []) if isinstance(listing, dict) else []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("here"):
            continue
        try:
            card = verify_card(entry.get("card", {}), mesh=mesh)
        except CardError as exc:
            logger.debug("ignoring a relay-listed card: %s", exc)
            continue
        cards[card.id] = card
    return cards


