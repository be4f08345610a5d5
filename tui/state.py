"""The TUI's picture of the mesh, built only from what the watched node says.

`MeshState.apply(item)` folds one feed item (connection change, peer event,
call event, table refresh) into the picture; the widgets get immutable views
of it (`peer_rows()`, `traces()`, `topology()`). Nothing here touches the
screen or the network, so every rule (how calls pair up, how p50 and tok/s are
computed, when a peer is dead or gone) is testable on plain values.

Statistics per peer come from the `call_finished` events the node reports:
p50 is the median duration of the last `STATS_WINDOW` calls served by that
peer, tok/s is their generated tokens over their time. A peer with no calls
seen yet shows its health-ping latency (`latency_ms` from the table) instead.
"""

from __future__ import annotations

import statistics
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from federation import CallEvent, CallFinished, CallStarted, Dropped, PeerCard, PeerDown, PeerEvent, PeerRow
from tui.wire import Connected, Disconnected, FeedItem, PeersRefreshed

__all__ = [
    "Clock",
    "ConnectionState",
    "EDGE_TTL",
    "Edge",
    "LoggedCall",
    "LoggedTrace",
    "MAX_TRACES",
    "MeshState",
    "PeerLine",
    "STATS_WINDOW",
    "Topology",
    "display_name",
]

STATS_WINDOW = 50
"""Calls per peer that p50 and tok/s are computed over."""

MAX_TRACES = 300
"""Traces kept for the call log; older ones fall off."""

EDGE_TTL = 8.0
"""Seconds a finished call stays drawn on the topology while it fades."""

Clock = Callable[[], float]


@dataclass(frozen=True)
class ConnectionState:
    """How the TUI stands with the node it watches."""

    phase: Literal["connecting", "connected", "unreachable"] = "connecting"
    url: str = ""
    reason: str = ""
    retry_in: float = 0.0
    attempt: int = 0


@dataclass(frozen=True)
class PeerLine:
    """One line of the peers table: a node's `PeerRow` with the figures the TUI computes (p50, tok/s)."""

    id: str
    name: str
    via: str
    models: tuple[str, ...]
    status: str
    in_flight: int
    p50_ms: float | None
    p50_is_ping: bool
    tokens_per_s: float | None
    calls_served: int
    is_self: bool = False
    url: str = ""


@dataclass(frozen=True)
class LoggedCall:
    """One call as the log shows it: the latest event about it (`info`), when it began, when we last heard."""

    seq: int
    info: CallEvent
    started_at: float
    seen: float

    @property
    def running(self) -> bool:
        return not isinstance(self.info, CallFinished)


@dataclass(frozen=True)
class LoggedTrace:
    """The calls of one workflow (one trace id), first call first."""

    key: str
    calls: tuple[LoggedCall, ...]


@dataclass(frozen=True)
class Edge:
    """A call between two peers, drawn on the topology; `finished` is None while it runs."""

    caller: str
    callee: str
    finished: float | None
    failed: bool


@dataclass(frozen=True)
class Topology:
    """What the ring shows: peers in a stable order, the local one first."""

    self_id: str | None
    peers: tuple[tuple[str, str, str], ...]  # (id, name, status)
    busy: frozenset[str]
    edges: tuple[Edge, ...]


@dataclass
class _Stats:
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))

    def add(self, ms: float, tokens_out: int) -> None:
        self.samples.append((ms, tokens_out))

    def p50(self) -> float | None:
        return statistics.median(ms for ms, _ in self.samples) if self.samples else None

    def tokens_per_s(self) -> float | None:
        generating = [(ms, tokens) for ms, tokens in self.samples if tokens > 0 and ms > 0]
        if not generating:
            return None
        return sum(t for _, t in generating) / (sum(ms for ms, _ in generating) / 1000)


def display_name(peer_id: str | None, names: Mapping[str, str]) -> str:
    """A short human name for a peer id; `client` for a caller outside the mesh."""
    if peer_id is None:
        return "client"
    return names.get(peer_id, peer_id[:8])


class MeshState:
    """Everything the TUI knows, updated one feed item at a time."""

    def __init__(self, url: str = "", clock: Clock = time.time) -> None:
        self._clock = clock
        self.connection = ConnectionState(url=url)
        self.card: PeerCard | None = None
        self.peers: dict[str, PeerRow] = {}
        self._self_served = 0
        self._stats: dict[str, _Stats] = {}
        self._traces: OrderedDict[str, list[LoggedCall]] = OrderedDict()
        self._seq = 0
        self.dropped = 0

    # -- folding feed items ------------------------------------------------
    def apply(self, item: FeedItem) -> None:
        if isinstance(item, Connected):
            self._connected(item)
        elif isinstance(item, Disconnected):
            self.connection = replace(
                self.connection, phase="unreachable", reason=item.reason, retry_in=item.retry_in, attempt=item.attempt
            )
            self._abandon_running()
        elif isinstance(item, PeersRefreshed):
            self.peers = {p.id: p for p in item.peers}
        elif isinstance(item, PeerEvent):
            self._peer_event(item)
        elif isinstance(item, CallStarted | CallFinished):
            self._call_event(item)
        elif isinstance(item, Dropped):
            self.dropped += item.count

    def _connected(self, item: Connected) -> None:
        self.card = item.card
        self.peers = {p.id: p for p in item.peers}
        self._self_served = item.calls_served
        self.connection = replace(self.connection, phase="connected", reason="", retry_in=0.0, attempt=0)

    def _abandon_running(self) -> None:
        """Calls that were running when the stream broke will never report; say so."""
        for calls in self._traces.values():
            for index, call in enumerate(calls):
                if call.running:
                    lost = CallFinished(**call.info.model_dump(), outcome="lost", error="the connection to the node broke while it ran")
                    calls[index] = replace(call, info=lost, seen=self._clock())

    def _peer_event(self, event: PeerEvent) -> None:
        if isinstance(event, PeerDown) and event.reason == "left":
            self.peers.pop(event.id, None)
            return
        peer = event.model_copy(update={"status": "dead"}) if isinstance(event, PeerDown) else event
        self.peers[peer.id] = peer

    def _call_event(self, info: CallEvent) -> None:
        if not isinstance(info, CallFinished):
            self._record(info)
            return
        calls, index = self._running_match(info) or self._record(info)
        calls[index] = replace(calls[index], info=info, seen=self._clock())
        if info.callee is not None and info.ms is not None:
            self._stats.setdefault(info.callee, _Stats()).add(info.ms, info.tokens_out)
        if self.card is not None and info.callee == self.card.id:
            self._self_served += 1

    def _record(self, info: CallEvent) -> tuple[list[LoggedCall], int]:
        """A new call in its trace (a trace of its own without a trace id); where it was put."""
        self._seq += 1
        started_at = info.at - ((info.ms or 0.0) if isinstance(info, CallFinished) else 0.0) / 1000
        call = LoggedCall(seq=self._seq, info=info, started_at=started_at, seen=self._clock())
        calls = self._traces.setdefault(info.trace_id or f"call-{self._seq}", [])
        calls.append(call)
        while len(self._traces) > MAX_TRACES:
            self._traces.popitem(last=False)
        return calls, len(calls) - 1

    def _running_match(self, info: CallEvent) -> tuple[list[LoggedCall], int] | None:
        """The oldest running call this finish belongs to (same trace, tool, caller, callee)."""
        if info.trace_id:
            pools = [self._traces[info.trace_id]] if info.trace_id in self._traces else []
        else:
            pools = list(self._traces.values())
        wanted = (info.tool, info.callee, info.caller, info.trace_id)
        for calls in pools:
            for index, call in enumerate(calls):
                if call.running and (call.info.tool, call.info.callee, call.info.caller, call.info.trace_id) == wanted:
                    return calls, index
        return None

    # -- views for widgets -------------------------------------------------
    @property
    def self_id(self) -> str | None:
        return self.card.id if self.card else None

    def _running_by_callee(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for calls in self._traces.values():
            for call in calls:
                if call.running and call.info.callee:
                    counts[call.info.callee] = counts.get(call.info.callee, 0) + 1
        return counts

    def peer_rows(self) -> tuple[PeerLine, ...]:
        """The watched node first, then every peer it knows."""
        running = self._running_by_callee()
        rows: list[PeerLine] = []
        if self.card is not None:
            stats = self._stats.get(self.card.id, _Stats())
            status = "up" if self.connection.phase == "connected" else "unreachable"
            rows.append(
                PeerLine(
                    id=self.card.id,
                    name=self.card.name,
                    via="self",
                    models=tuple(m.name for m in self.card.models),
                    status=status,
                    in_flight=running.get(self.card.id, 0),
                    p50_ms=stats.p50(),
                    p50_is_ping=False,
                    tokens_per_s=stats.tokens_per_s(),
                    calls_served=self._self_served,
                    is_self=True,
                    url=self.card.endpoints[0] if self.card.endpoints else "",
                )
            )
        for peer in self.peers.values():
            stats = self._stats.get(peer.id, _Stats())
            p50 = stats.p50()
            rows.append(
                PeerLine(
                    id=peer.id,
                    name=peer.name,
                    via=peer.via,
                    models=peer.models,
                    status=peer.status,
                    in_flight=max(peer.in_flight, running.get(peer.id, 0)),
                    p50_ms=p50 if p50 is not None else peer.latency_ms,
                    p50_is_ping=p50 is None and peer.latency_ms is not None,
                    tokens_per_s=stats.tokens_per_s(),
                    calls_served=peer.calls_served,
                    url=peer.url,
                )
            )
        return tuple(rows)

    def traces(self) -> tuple[LoggedTrace, ...]:
        """Newest trace first."""
        return tuple(LoggedTrace(key, tuple(calls)) for key, calls in reversed(self._traces.items()))

    def names(self) -> dict[str, str]:
        """Display names by peer id, for labels."""
        names = {peer.id: peer.name for peer in self.peers.values()}
        if self.card is not None:
            names[self.card.id] = self.card.name
        return names

    def calls_of(self, peer_id: str) -> list[LoggedCall]:
        """Recent calls a peer served or made, newest first."""
        found = [c for calls in self._traces.values() for c in calls if peer_id in (c.info.caller, c.info.callee)]
        return sorted(found, key=lambda c: c.seq, reverse=True)

    def topology(self) -> Topology:
        now = self._clock()
        peers = []
        if self.card is not None:
            peers.append((self.card.id, self.card.name, "up" if self.connection.phase == "connected" else "unreachable"))
        peers += [(p.id, p.name, p.status) for p in sorted(self.peers.values(), key=lambda p: (p.name, p.id))]
        edges = []
        for calls in self._traces.values():
            for call in calls:
                caller, callee = call.info.caller, call.info.callee
                if caller is None or callee is None or caller == callee:
                    continue
                if call.running or now - call.seen < EDGE_TTL:
                    finished = None if call.running else call.seen
                    edges.append(Edge(caller, callee, finished, failed=isinstance(call.info, CallFinished) and call.info.failed))
        return Topology(self.self_id, tuple(peers), frozenset(self._running_by_callee()), tuple(edges))
