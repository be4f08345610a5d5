"""What a peer says about itself and its mesh, typed once: one peer row, one model per event kind.

A peer's table (`GET /peers`), its event stream (`GET /events`), the stored
table (`mcpfed peers`), the CLI and the TUI all speak these shapes, so a
field renamed here is renamed everywhere, and a publisher that gets an event
wrong fails where it publishes, not in a watcher far away.

Readers ignore fields they do not know (a newer peer may say more); the
event bus refuses unknown fields (see `federation.events.EventBus.publish`).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from federation.card import PeerCard

__all__ = [
    "CallEvent",
    "CallFinished",
    "CallStarted",
    "Dropped",
    "EVENT_MODELS",
    "EventKind",
    "EventModel",
    "Hello",
    "PeerChanged",
    "PeerDown",
    "PeerEvent",
    "PeerRow",
    "PeerStatus",
    "PeerSuspect",
    "PeerUp",
    "Via",
    "parse_event",
]

Via = Literal["self", "static", "mdns", "relay"]
PeerStatus = Literal["up", "suspect", "dead"]
EventKind = Literal["hello", "peer_up", "peer_down", "peer_suspect", "peer_changed", "call_started", "call_finished", "dropped"]

_READ = ConfigDict(extra="ignore", frozen=True)


class PeerRow(BaseModel):
    """One peer as a table shows it: `GET /peers` rows, `peer_*` events, the stored table."""

    model_config = _READ

    id: str
    name: str
    via: str = Field(description="the best way to reach it: self, static, mdns or relay")
    url: str = ""
    routes: dict[str, str] = Field(default_factory=dict, description="every way to reach the peer: via -> MCP URL")
    status: PeerStatus = "up"
    models: tuple[str, ...] = ()
    tools: int = Field(default=0, description="how many tools its card lists")
    in_flight: int = 0
    queued: int = 0
    latency_ms: float | None = Field(default=None, description="health-ping latency, smoothed")
    calls_served: int = 0
    last_seen: float = Field(default=0.0, description="unix time of the last successful contact")
    since: float = Field(default=0.0, description="unix time the status last changed (0: not known, a stored row)")
    mesh: str | None = None
    digest: str = Field(default="", description="changes when the peer's models or tools change")

    @classmethod
    def from_card(cls, card: PeerCard, *, latency_ms: float | None, last_seen: float, **state: Any) -> PeerRow:
        """The row of a peer whose verified card we hold; `state` is how we see it (via, url, status, load)."""
        return cls(
            id=card.id,
            name=card.name,
            models=tuple(m.name for m in card.models),
            tools=len(card.tools),
            latency_ms=None if latency_ms is None else round(latency_ms, 2),
            last_seen=round(last_seen, 3),
            mesh=card.mesh,
            digest=card.digest(),
            **state,
        )


class EventModel(BaseModel):
    """What every event carries: its kind (the SSE `event:` line) and when it happened."""

    model_config = _READ

    kind: ClassVar[EventKind]
    at: float = Field(default_factory=time.time)


class Hello(EventModel):
    """The first event of every `/events` stream: the card of the peer being watched."""

    kind: ClassVar[EventKind] = "hello"
    card: PeerCard


class PeerUp(PeerRow, EventModel):
    """A peer entered the table, or came back from suspect or dead."""

    kind: ClassVar[EventKind] = "peer_up"


class PeerSuspect(PeerRow, EventModel):
    """A peer missed a health check; one more success brings it back."""

    kind: ClassVar[EventKind] = "peer_suspect"


class PeerChanged(PeerRow, EventModel):
    """A peer's card (models, tools) or one of its routes changed."""

    kind: ClassVar[EventKind] = "peer_changed"


class PeerDown(PeerRow, EventModel):
    """A peer is dead (`unresponsive`: it stays, marked dead) or gone (`left`, `forgotten`: removed)."""

    kind: ClassVar[EventKind] = "peer_down"
    reason: Literal["unresponsive", "left", "forgotten"] = "left"

    @property
    def removed(self) -> bool:
        return self.reason != "unresponsive"


class CallStarted(EventModel):
    """A call began: who called (None: a client outside the mesh), who serves, in which trace."""

    kind: ClassVar[EventKind] = "call_started"
    tool: str
    trace_id: str | None = None
    span_id: str | None = None
    parent: str | None = None
    caller: str | None = None
    callee: str | None = None


class CallFinished(CallStarted):
    """A call ended; `outcome` is ok, error, cancelled or input_required (the callee asked the caller a question
    and the call goes on as a retry); a watcher that lost the stream says `lost`."""

    kind: ClassVar[EventKind] = "call_finished"
    outcome: str
    ms: float | None = Field(default=None, description="duration; None only for a call a watcher lost")
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0

    @property
    def failed(self) -> bool:
        """Whether a user should see this call as failed: a question back to the caller is not a failure."""
        return self.outcome not in ("ok", "input_required")


class Dropped(EventModel):
    """The subscriber fell behind and lost `count` events; re-read `/peers` to catch up."""

    kind: ClassVar[EventKind] = "dropped"
    count: int


PeerEvent = PeerUp | PeerSuspect | PeerChanged | PeerDown
CallEvent = CallStarted | CallFinished

EVENT_MODELS: dict[str, type[EventModel]] = {
    model.kind: model for model in (Hello, PeerUp, PeerSuspect, PeerChanged, PeerDown, CallStarted, CallFinished, Dropped)
}
"""The model of every event kind."""


def parse_event(kind: str, data: str | bytes) -> EventModel | None:
    """One SSE event (its `event:` kind and `data:` JSON) as its model; None for an unknown kind or malformed data."""
    model = EVENT_MODELS.get(kind)
    if model is None:
        return None
    try:
        return model.model_validate_json(data)
    except ValidationError:
        return None
