"""What a peer tells the TUI over HTTP, as typed values validated on arrival.

The TUI reads three shapes from the node it watches: the `/peers` table
(`Peer.as_dict()` rows), the `/events` stream (peer and call events) and the
signed card (`/peer`, and the `hello` event). Each is parsed here once, so the
rest of the TUI passes objects, never dicts. Unknown fields and unknown event
kinds are ignored: a newer peer may say more than this TUI understands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from federation.card import PeerCard

__all__ = [
    "CallEvent",
    "CallInfo",
    "Connected",
    "Disconnected",
    "Dropped",
    "FeedItem",
    "Hello",
    "PeerEvent",
    "PeerInfo",
    "PeersRefreshed",
    "parse_event",
]


class PeerInfo(BaseModel):
    """One row of a node's peer table (`GET /peers`, `peer_*` events)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str
    via: str = "?"
    url: str = ""
    routes: dict[str, str] = Field(default_factory=dict)
    status: str = "up"
    models: tuple[str, ...] = ()
    tools: int = 0
    in_flight: int = 0
    queued: int = 0
    latency_ms: float | None = None
    calls_served: int = 0
    last_seen: float = 0.0
    mesh: str | None = None
    digest: str = ""


class CallInfo(BaseModel):
    """One `call_started` / `call_finished` event; `outcome` is None while running."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    tool: str
    trace_id: str | None = None
    caller: str | None = None
    callee: str | None = None
    ms: float | None = None
    outcome: str | None = None
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    at: float = 0.0


@dataclass(frozen=True)
class Hello:
    """The first event of a stream: the card of the node being watched."""

    card: PeerCard


@dataclass(frozen=True)
class PeerEvent:
    kind: Literal["peer_up", "peer_suspect", "peer_down", "peer_changed"]
    peer: PeerInfo
    reason: str | None = None


@dataclass(frozen=True)
class CallEvent:
    kind: Literal["call_started", "call_finished"]
    call: CallInfo


@dataclass(frozen=True)
class Dropped:
    """The node dropped events for us (we read too slowly); a refresh catches up."""

    count: int


@dataclass(frozen=True)
class Connected:
    """A (re)connection: the node's card, health and full peer table."""

    card: PeerCard
    peers: tuple[PeerInfo, ...]
    calls_served: int = 0


@dataclass(frozen=True)
class PeersRefreshed:
    """The periodic safety-net re-read of `/peers`."""

    peers: tuple[PeerInfo, ...]


@dataclass(frozen=True)
class Disconnected:
    """The node cannot be reached; the feed retries after `retry_in` seconds."""

    reason: str
    retry_in: float
    attempt: int


FeedItem = PeerEvent | CallEvent | Dropped | Connected | PeersRefreshed | Disconnected
"""What a feed delivers (the `hello` event arrives folded into `Connected`)."""

_PEER_KINDS = {"peer_up", "peer_suspect", "peer_down", "peer_changed"}
_CALL_KINDS = {"call_started", "call_finished"}


def parse_event(kind: str, data: str) -> Hello | PeerEvent | CallEvent | Dropped | None:
    """One SSE event as a typed value; None for kinds this TUI does not show or malformed data."""
    try:
        payload: dict[str, Any] = json.loads(data)
        if kind == "hello":
            return Hello(card=PeerCard.model_validate(payload["card"]))
        if kind in _PEER_KINDS:
            return PeerEvent(kind=kind, peer=PeerInfo.model_validate(payload), reason=payload.get("reason"))  # type: ignore[arg-type]
        if kind in _CALL_KINDS:
            return CallEvent(kind=kind, call=CallInfo.model_validate(payload))  # type: ignore[arg-type]
        if kind == "dropped":
            return Dropped(count=int(payload.get("count", 0)))
    except (ValueError, KeyError, TypeError, ValidationError):
        return None
    return None
