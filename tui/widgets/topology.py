"""The topology view: peers on a ring, calls between them as edges that fade.

The watched node sits at the top of the ring, marked; the others follow in
name order. A running call is a bright edge from caller to callee; once it
finishes the edge fades out over `EDGE_TTL` seconds (red if it failed). A peer
serving a call right now is drawn bold. Lines are braille dots, so even a
small pane draws a smooth ring. Past `LABEL_LIMIT` peers the names would
overlap, so only the local one is labelled and a count is shown instead.

The widget redraws on its own only while an edge is fading; a quiet mesh
costs nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.color import Color
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget

from tui.canvas import BrailleCanvas
from tui.state import EDGE_TTL, Edge, Topology

__all__ = ["LABEL_LIMIT", "TopologyView", "ring_positions"]

LABEL_LIMIT = 16
"""Most peers labelled by name; beyond this the ring shows dots and a count."""

FADE_TICK = 0.25
"""Seconds between redraws while an edge fades."""

_LABEL_MAX = 12
_MARKS = {"up": "●", "suspect": "▲", "dead": "✖", "unreachable": "✖"}


def ring_positions(count: int, cx: float, cy: float, radius: float) -> list[tuple[int, int]]:
    """`count` points evenly on a circle, the first at the top, clockwise (dot space)."""
    points = []
    for i in range(count):
        angle = -math.pi / 2 + 2 * math.pi * i / max(1, count)
        points.append((round(cx + radius * math.cos(angle)), round(cy + radius * math.sin(angle))))
    return points


def _fit_ring(cx: float, cy: float, longest_label: int) -> tuple[float, int]:
    """Radius (dots) and label width (cells): room for labels beside the ring, but the ring keeps ≥60% of the pane."""
    largest = max(2.0, min(cx - 2, cy - 3))
    wanted = cx - 2 * (min(longest_label, _LABEL_MAX) + 2)
    radius = min(largest, max(0.6 * largest, wanted))
    label_width = max(3, int((cx - radius) / 2) - 2)
    return radius, min(label_width, _LABEL_MAX)


class TopologyView(Widget):
    """Draws a `Topology` (from `MeshState.topology()`)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "topology--ring",
        "topology--edge",
        "topology--failed",
        "topology--self",
        "topology--up",
        "topology--suspect",
        "topology--dead",
        "topology--busy",
        "topology--label",
    }

    DEFAULT_CSS = """
    TopologyView {
        .topology--ring { color: $foreground 15%; }
        .topology--edge { color: $accent; }
        .topology--failed { color: $error; }
        .topology--self { color: $text-accent; text-style: bold; }
        .topology--up { color: $text-success; }
        .topology--suspect { color: $text-warning; }
        .topology--dead { color: $text-error; }
        .topology--busy { color: $text-warning; text-style: bold; }
        .topology--label { color: $text-muted; }
    }
    """

    topology: reactive[Topology | None] = reactive(None)

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._clock = clock
        self._fader: Timer | None = None

    def on_mount(self) -> None:
        self._fader = self.set_interval(FADE_TICK, self._fade_step, pause=True)

    def watch_topology(self, topology: Topology | None) -> None:
        if self._fader is not None and topology is not None and self._fading(topology.edges):
            self._fader.resume()

    def _fading(self, edges: tuple[Edge, ...]) -> bool:
        now = self._clock()
        return any(e.finished is not None and now - e.finished < EDGE_TTL for e in edges)

    def _fade_step(self) -> None:
        self.refresh()
        if self._fader is not None and (self.topology is None or not self._fading(self.topology.edges)):
            self._fader.pause()

    # -- drawing -------------------------------------------------------------
    def render(self) -> Text:
        topology = self.topology
        width, height = self.size
        if topology is None or not topology.peers:
            return Text("waiting for the node…", style="dim")
        canvas = BrailleCanvas(width, height)
        peers = topology.peers
        labelled = len(peers) <= LABEL_LIMIT
        cx, cy = canvas.dot_width / 2, canvas.dot_height / 2
        radius, label_width = _fit_ring(cx, cy, max(len(name) for _, name, _ in peers) if labelled else 0)
        places = dict(zip((p[0] for p in peers), ring_positions(len(peers), cx, cy, radius), strict=True))
        if len(peers) > 1:
            canvas.circle(cx, cy, radius, self.get_component_rich_style("topology--ring"), weight=-1)
        self._draw_edges(canvas, topology.edges, places)
        for peer_id, name, status in peers:
            x, y = places[peer_id]
            col, row = x // 2, y // 4
            is_self = peer_id == topology.self_id
            canvas.text(col, row, "◉" if is_self else _MARKS.get(status, "?"), self._node_style(peer_id, status, topology))
            if labelled or is_self:
                label = name if len(name) <= label_width else name[: max(1, label_width - 1)] + "…"
                at = col + 2 if x >= cx else col - 1 - len(label)
                style = self.get_component_rich_style("topology--self" if is_self else "topology--label")
                canvas.text(max(0, at), row, label, style)
        if not labelled:
            canvas.text(0, height - 1, f"{len(peers)} peers · {len(topology.busy)} busy", self.get_component_rich_style("topology--label"))
        return canvas.render()

    def _node_style(self, peer_id: str, status: str, topology: Topology) -> Style:
        if peer_id in topology.busy:
            return self.get_component_rich_style("topology--busy")
        if peer_id == topology.self_id and status == "up":
            return self.get_component_rich_style("topology--self")
        return self.get_component_rich_style(f"topology--{'dead' if status == 'unreachable' else status}")

    def _draw_edges(self, canvas: BrailleCanvas, edges: tuple[Edge, ...], places: dict[str, tuple[int, int]]) -> None:
        now = self._clock()
        background = self.background_colors[1]
        for edge in edges:
            if edge.caller not in places or edge.callee not in places:
                continue
            age = 0.0 if edge.finished is None else now - edge.finished
            if age >= EDGE_TTL:
                continue
            base = self.get_component_rich_style("topology--failed" if edge.failed else "topology--edge")
            colour = Color.from_rich_color(base.color) if base.color is not None else Color(255, 255, 255)
            faded = colour.blend(background, min(0.85, age / EDGE_TTL))
            canvas.line(*places[edge.caller], *places[edge.callee], Style(color=faded.rich_color), weight=-age)
