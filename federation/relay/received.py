"""A card as a relay received it: checked, and kept as the JSON object its peer sent.

A relay passes cards on (`/peers`, the shared directory) as they came, never
re-serialized from what this version parsed: a card signed by a newer version
carries fields this one does not know, they are signed, and a relay that
dropped them would make the card fail at every peer reading it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from federation.card import PeerCard

__all__ = ["ReceivedCard"]


class ReceivedCard(NamedTuple):
    card: PeerCard
    """What this version reads in it (ids, mesh, signature)."""
    raw: dict[str, Any]
    """The JSON object as the peer sent it, unknown fields included: what the relay passes on."""
