"""The peer table: who is known, how they are reached, and whether they are alive.

One source of truth for discovery (mDNS, relays, static peers feed it),
routing (reads it to choose peers) and the TUI (sees it through `/peers` and
the `peer_*` events). Only verified cards enter it. A peer reachable several
ways keeps every route; a direct one (static, mDNS) wins over a relayed one.

Liveness: each health miss counts; the first marks a peer `suspect`, the
third `dead`, or the first already when another peer reported it failing
(`fail`). Any success brings it back `up`. A clean leave (mDNS goodbye)
removes it at once.

A peer that has never answered a contact is at most `suspect` for its first
`JOIN_GRACE_SECONDS` as far as timeouts go (`miss(..., timed_out=True)`):
while many peers start at once on a loaded machine, pings time out, and
every suspect/dead flip costs every peer work (events, tool lists, store
rows), which kept a 50-peer start-up saturated. A refused or reset
connection is no slow start-up (no process is there), so it counts as ever.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from federation.card import PeerCard
from federation.contract import PeerRow, PeerStatus, Via
from federation.events import EventBus

__all__ = ["DEAD_AFTER_MISSES", "JOIN_GRACE_SECONDS", "Peer", "PeerTable"]

DEAD_AFTER_MISSES = 3
JOIN_GRACE_SECONDS = 30.0
"""How long misses cannot make a peer that never answered `dead` (a start-up burst's slow answers are not deaths)."""
_EWMA_WEIGHT = 0.3
_PREFERENCE: dict[str, int] = {"self": 0, "static": 1, "mdns": 2, "relay": 3}


@dataclass
class Peer:
    """What this node knows of one other peer."""

    card: PeerCard
    routes: dict[str, str] = field(default_factory=dict)  # via -> MCP URL
    status: PeerStatus = "up"
    first_seen: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)
    since: float = field(default_factory=time.time)  # when `status` last changed: how long a peer has been down or back
    latency_ms: float | None = None
    misses: int = 0
    in_flight: int = 0
    queued: int = 0
    calls_served: int = 0
    answered: bool = False  # a contact (health ping, call) ever succeeded

    @property
    def id(self) -> str:
        return self.card.id

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def via(self) -> str:
        """The best way to reach this peer."""
        return min(self.routes, key=lambda v: _PREFERENCE.get(v, 9))

    @property
    def url(self) -> str:
        return self.routes[self.via]

    @property
    def models(self) -> list[str]:
        return [m.name for m in self.card.models]

    def row(self) -> PeerRow:
        """The peer as `GET /peers` serves it and `peer_*` events carry it."""
        return PeerRow.from_card(
            self.card,
            latency_ms=self.latency_ms,
            last_seen=self.last_seen,
            since=round(self.since, 3),
            via=self.via,
            url=self.url,
            routes=dict(self.routes),
            status=self.status,
            in_flight=self.in_flight,
            queued=self.queued,
            calls_served=self.calls_served,
        )

    def fields(self) -> dict[str, Any]:
        """The row's fields, for `EventBus.publish(kind, **fields)`."""
        return dict(self.row())


def _set_status(peer: Peer, status: PeerStatus) -> None:
    if peer.status != status:
        peer.status, peer.since = status, time.time()


class PeerTable:
    """Peers by id; every change is published on the node's event bus."""

    def __init__(self, events: EventBus, self_id: str) -> None:
        self._events = events
        self._self_id = self_id
        self._peers: dict[str, Peer] = {}

    def __iter__(self) -> Iterator[Peer]:
        return iter(list(self._peers.values()))

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    def find(self, name_or_id: str) -> Peer | None:
        """By exact id, then id prefix, then name (the newest of that name)."""
        if name_or_id in self._peers:
            return self._peers[name_or_id]
        by_prefix = [p for p in self._peers.values() if p.id.startswith(name_or_id)]
        if len(by_prefix) == 1:
            return by_prefix[0]
        by_name = [p for p in self._peers.values() if p.name == name_or_id]
        return max(by_name, key=lambda p: p.card.issued_at) if by_name else None

    def up(self) -> list[Peer]:
        return [p for p in self._peers.values() if p.status == "up"]

    def snapshot(self) -> list[PeerRow]:
        return [p.row() for p in sorted(self._peers.values(), key=lambda p: (p.name, p.id))]

    def admit(self, card: PeerCard, via: Via, url: str) -> Peer | None:
        """Add or refresh a peer from a verified card; returns None for our own card."""
        if card.id == self._self_id:
            return None
        peer = self._peers.get(card.id)
        if peer is None:
            peer = Peer(card=card, routes={via: url})
            self._peers[card.id] = peer
            self._events.publish("peer_up", **peer.fields())
            return peer
        changed = card.digest() != peer.card.digest() or peer.routes.get(via) != url
        revived = peer.status != "up"
        peer.card = card
        peer.routes[via] = url
        self._mark_seen(peer)
        if revived:
            self._events.publish("peer_up", **peer.fields())
        elif changed:
            self._events.publish("peer_changed", **peer.fields())
        return peer

    def observe(self, peer_id: str, *, latency_ms: float, in_flight: int = 0, queued: int = 0, calls_served: int | None = None) -> None:
        """A successful contact (health ping or call): update latency, load, status."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        peer.latency_ms = latency_ms if peer.latency_ms is None else (1 - _EWMA_WEIGHT) * peer.latency_ms + _EWMA_WEIGHT * latency_ms
        peer.in_flight, peer.queued = in_flight, queued
        if calls_served is not None:
            peer.calls_served = calls_served
        revived = peer.status != "up"
        peer.answered = True
        self._mark_seen(peer)
        if revived:
            self._events.publish("peer_up", **peer.fields())

    def _mark_seen(self, peer: Peer) -> None:
        peer.last_seen = time.time()
        peer.misses = 0
        _set_status(peer, "up")

    def miss(self, peer_id: str, *, timed_out: bool = False) -> None:
        """A failed contact: suspect after the first, dead after `DEAD_AFTER_MISSES` (timeouts: once it has answered, or its grace ran out)."""
        peer = self._peers.get(peer_id)
        if peer is None or peer.status == "dead":
            return
        peer.misses += 1
        joining = not peer.answered and time.time() - peer.first_seen < JOIN_GRACE_SECONDS
        if peer.misses >= DEAD_AFTER_MISSES and not (joining and timed_out):
            _set_status(peer, "dead")
            peer.in_flight = peer.queued = 0  # its last report said busy; a dead peer runs nothing we could wait for
            self._events.publish("peer_down", reason="unresponsive", **peer.fields())
        elif peer.status == "up":
            _set_status(peer, "suspect")
            self._events.publish("peer_suspect", **peer.fields())

    def fail(self, peer_id: str) -> None:
        """A miss another peer's report backs up (health.py): dead at once, through suspect so `/events` tells it in order."""
        peer = self._peers.get(peer_id)
        if peer is None or peer.status == "dead":
            return
        if peer.status == "up":
            self.miss(peer_id)
        peer.misses = DEAD_AFTER_MISSES - 1
        self.miss(peer_id)

    def drop_route(self, peer_id: str, via: Via, *, reason: Literal["left", "forgotten"] = "left") -> None:
        """One way to a peer went away (mDNS goodbye, relay lost); remove the peer if none is left.

        `reason` rides on the `peer_down` event: "left" for a goodbye, "forgotten" for a long-dead peer.
        """
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        last_seen_as = peer.fields()
        peer.routes.pop(via, None)
        if not peer.routes:
            del self._peers[peer_id]
            self._events.publish("peer_down", reason=reason, **last_seen_as)
        else:
            self._events.publish("peer_changed", **peer.fields())
