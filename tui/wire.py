"""What a feed delivers to the TUI: the node's own events, plus the feed's news about the connection.

The node's shapes (its `/peers` rows, its `/events` events, its card) are
`federation`'s contract models, parsed there; this module adds only what the
feed itself reports: a (re)connection with the full table, a periodic table
refresh, and a lost connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from federation import CallEvent, Dropped, PeerCard, PeerEvent, PeerRow, parse_event

__all__ = ["Connected", "Disconnected", "FeedItem", "PeersRefreshed", "node_event"]


@dataclass(frozen=True)
class Connected:
    """A (re)connection: the node's card, health and full peer table."""

    card: PeerCard
    peers: tuple[PeerRow, ...]
    calls_served: int = 0


@dataclass(frozen=True)
class PeersRefreshed:
    """The periodic safety-net re-read of `/peers`."""

    peers: tuple[PeerRow, ...]


@dataclass(frozen=True)
class Disconnected:
    """The node cannot be reached; the feed retries after `retry_in` seconds."""

    reason: str
    retry_in: float
    attempt: int


FeedItem = PeerEvent | CallEvent | Dropped | Connected | PeersRefreshed | Disconnected
"""What a feed delivers (the `hello` event arrives folded into `Connected`)."""


def node_event(kind: str, data: str) -> PeerEvent | CallEvent | Dropped | None:
    """One SSE event the TUI shows, as its model; None for other kinds (`hello`, newer ones) and malformed data."""
    event = parse_event(kind, data)
    return event if isinstance(event, PeerEvent | CallEvent | Dropped) else None
