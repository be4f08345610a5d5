"""The live call log: one line per call, grouped into the traces of workflows.

Each trace (calls sharing a trace id) is one line showing its first call,
with `(+N)` when more calls belong to it; Enter or space expands it into the
rest. Lines read `time caller → callee tool ms tokens outcome`. The newest
trace is on top; if the cursor sits on an older line it stays on it while new
calls arrive. Labels are drawn at render time from the call records, so they
follow the theme and names learned later.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Tree
from textual.widgets.tree import TreeNode, UnknownNodeID

from federation import CallFinished
from tui.state import LoggedCall, LoggedTrace, display_name

__all__ = ["CallLog", "call_line"]

_TOGGLE = Style.from_meta({"toggle": True})
_LINE_CACHE = 2000


class CallLog(Tree[LoggedCall]):
    """Traces, newest first; expand one to see all its calls."""

    COMPONENT_CLASSES: ClassVar[set[str]] = Tree.COMPONENT_CLASSES | {
        "call-log--time",
        "call-log--tool",
        "call-log--ok",
        "call-log--failed",
        "call-log--running",
        "call-log--detail",
        "call-log--mine",
    }

    DEFAULT_CSS = """
    CallLog {
        .call-log--time { color: $text-muted; }
        .call-log--tool { text-style: bold; }
        .call-log--ok { color: $text-success; }
        .call-log--failed { color: $text-error; }
        .call-log--running { color: $text-warning; }
        .call-log--detail { color: $text-muted; }
        .call-log--mine { color: $text-accent; text-style: bold; }
    }
    """

    traces: reactive[tuple[LoggedTrace, ...]] = reactive(tuple, init=False)
    names: reactive[dict[str, str]] = reactive(dict, init=False)
    own_traces: reactive[frozenset[str]] = reactive(frozenset, init=False)

    def __init__(self, *, tz: tzinfo | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("calls", id=id, classes=classes)
        self.show_root = False
        self.guide_depth = 2
        self._tz = tz
        self._trace_nodes: dict[str, TreeNode[LoggedCall]] = {}
        self._shown: dict[str, LoggedTrace] = {}
        self._lines: dict[tuple[LoggedCall, int, bool], Text] = {}

    def watch_traces(self, traces: tuple[LoggedTrace, ...]) -> None:
        keep = self.cursor_node if self.cursor_line > 0 else None
        wanted = {trace.key for trace in traces}
        for key in [k for k in self._trace_nodes if k not in wanted]:
            self._trace_nodes.pop(key).remove()
            del self._shown[key]
        for trace in reversed(traces):  # oldest first, each new one pushed on top
            node = self._trace_nodes.get(trace.key)
            if node is None:
                node = self.root.add(trace.key, data=trace.calls[0], before=0 if self.root.children else None)
                self._trace_nodes[trace.key] = node
            if self._shown.get(trace.key) != trace:
                self._fill(node, trace)
                self._shown[trace.key] = trace
        if keep is not None and self._attached(keep):
            self.move_cursor(keep)

    def _attached(self, node: TreeNode[LoggedCall]) -> bool:
        try:
            return self.get_node_by_id(node.id) is node
        except UnknownNodeID:
            return False

    def _fill(self, node: TreeNode[LoggedCall], trace: LoggedTrace) -> None:
        first, rest = trace.calls[0], trace.calls[1:]
        node.data = first
        node.allow_expand = bool(rest)
        children = list(node.children)
        for child, call in zip(children, rest, strict=False):  # the node may have fewer children than calls, or more
            child.data = call
            child.refresh()
        for call in rest[len(children) :]:
            node.add_leaf(call.info.tool, data=call)
        node.refresh()

    def watch_names(self) -> None:
        self._relabel()

    def watch_own_traces(self) -> None:
        self._relabel()

    def notify_style_update(self) -> None:
        self._lines.clear()  # the theme changed: colours change
        super().notify_style_update()

    def _relabel(self) -> None:
        self._lines.clear()
        for node in self._trace_nodes.values():
            node.refresh()
            for child in node.children:
                child.refresh()

    def _line(self, node: TreeNode[LoggedCall], call: LoggedCall) -> Text:
        """A node's text before cursor styling; cached, since the tree measures every line on each change."""
        mine = call.info.trace_id in self.own_traces and node.parent is self.root
        key = (call, len(node.children), mine)
        line = self._lines.get(key)
        if line is None:
            if len(self._lines) > _LINE_CACHE:
                self._lines.clear()
            line = call_line(call, self.names, self._tz, self.get_component_rich_style)
            if node.children:
                line.append(f" (+{len(node.children)})", self.get_component_rich_style("call-log--detail"))
            if mine:
                line = Text.assemble(("› ", self.get_component_rich_style("call-log--mine")), line)
            self._lines[key] = line
        return line

    def get_label_width(self, node: TreeNode[LoggedCall]) -> int:
        if node.data is None:
            return super().get_label_width(node)
        return self._line(node, node.data).cell_len + (2 if node.parent is self.root else 0)

    def render_label(self, node: TreeNode[LoggedCall], base_style: Style, style: Style) -> Text:
        call = node.data
        if call is None:
            return super().render_label(node, base_style, style)
        line = self._line(node, call).copy()
        line.stylize(style)
        if node.allow_expand:
            return Text.assemble((self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE, base_style + _TOGGLE), line)
        if node.parent is self.root:  # line up with the traces that have an expand arrow
            return Text.assemble("  ", line)
        return line


def call_line(call: LoggedCall, names: dict[str, str], tz: tzinfo | None, style_of: Callable[[str], Style]) -> Text:
    """`12:04:05 alice → bob  chat  812 ms  12→40 tok  ok` for one call."""
    info = call.info
    when = datetime.fromtimestamp(call.started_at, tz).strftime("%H:%M:%S") if call.started_at else "--:--:--"
    parts: list[tuple[str, Style] | str] = [
        (when, style_of("call-log--time")),
        f" {display_name(info.caller, names)} → {display_name(info.callee, names)} ",
        (info.tool, style_of("call-log--tool")),
    ]
    if not isinstance(info, CallFinished):
        parts.append((" running…", style_of("call-log--running")))
    else:
        parts.append((f" {info.ms:.0f} ms" if info.ms is not None else "", style_of("call-log--detail")))
        if info.tokens_in or info.tokens_out:
            parts.append((f" {info.tokens_in}→{info.tokens_out} tok", style_of("call-log--detail")))
        if info.outcome == "input_required":  # the callee asked the caller something; the call goes on as a retry
            parts.append((" asked the caller", style_of("call-log--running")))
        else:
            parts.append((f" {info.outcome}", style_of("call-log--failed" if info.failed else "call-log--ok")))
        if info.error and info.failed:
            parts.append((f": {info.error.splitlines()[0][:80]}", style_of("call-log--failed")))
    return Text.assemble(*parts, no_wrap=True, overflow="ellipsis")
