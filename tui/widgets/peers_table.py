"""The peers table: one row per peer the watched node knows, the node itself first.

Rows arrive as a tuple of `PeerLine`s in the `peer_rows` reactive; the table diffs
them against what it shows (add, update changed cells, remove), so a busy
mesh updates in place without redrawing or losing the cursor. Any column
sorts (`s` cycles the column, `S` reverses); Enter posts `PeerChosen`.
The name and model columns share whatever width the pane has beyond the
fixed columns, so 80 columns show every column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.console import RenderableType
from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.events import Resize
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from tui.state import PeerLine

__all__ = ["COLUMN_KEYS", "PeersTable"]

_STATUS = {
    "up": ("$text-success", "●"),
    "suspect": ("$text-warning", "▲"),
    "dead": ("$text-error", "✖"),
    "unreachable": ("$text-error", "✖"),
}
_STATUS_ORDER = {"up": 0, "suspect": 1, "unreachable": 2, "dead": 3}


def _number(value: float | int | None, fmt: str, *, dim: bool = False) -> Text:
    if value is None:
        return Text("—", style="dim", justify="right")
    return Text(format(value, fmt), style="dim" if dim else "", justify="right")


def _status(row: PeerLine) -> Content:
    colour, mark = _STATUS.get(row.status, ("$text-warning", "?"))
    return Content.styled(f"{mark} {row.status}", colour)


class _IdCell(Text):
    """The id column shows a short id but carries the whole one, which the sort looks rows up by."""

    def __init__(self, peer_id: str) -> None:
        super().__init__(peer_id[:6])
        self.peer_id = peer_id


def _name(row: PeerLine) -> Content | Text:
    return Content.styled(row.name, "bold $text-accent") if row.is_self else Text(row.name)


@dataclass(frozen=True)
class _Column:
    key: str
    label: str
    width: int
    sort_value: Callable[[PeerLine], Any]
    cell: Callable[[PeerLine], RenderableType | Content]
    flex: int = 0  # share of the spare width this column takes


_COLUMNS = (
    _Column("name", "name", 8, lambda r: (not r.is_self, r.name.lower()), _name, flex=2),
    _Column("id", "id", 6, lambda r: r.id, lambda r: _IdCell(r.id)),
    _Column("via", "via", 6, lambda r: r.via, lambda r: Text(r.via)),
    _Column("model", "model", 6, lambda r: ",".join(r.models), lambda r: Text(", ".join(r.models) or "—"), flex=3),
    _Column("status", "status", 9, lambda r: _STATUS_ORDER.get(r.status, 9), _status),
    _Column("in_flight", "busy", 4, lambda r: -r.in_flight, lambda r: _number(r.in_flight, "d")),
    _Column("p50", "p50ms", 5, lambda r: r.p50_ms if r.p50_ms is not None else float("inf"), lambda r: _number(r.p50_ms, ".0f", dim=r.p50_is_ping)),
    _Column("tps", "tok/s", 5, lambda r: -(r.tokens_per_s or 0), lambda r: _number(r.tokens_per_s, ".1f")),
    _Column("calls", "calls", 5, lambda r: -r.calls_served, lambda r: _number(r.calls_served, "d")),
)
COLUMN_KEYS = tuple(c.key for c in _COLUMNS)
_FLEX_CAP = {"name": 22, "model": 30}


class PeersTable(DataTable[Any]):
    """Peers, live; Enter opens one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Open peer", show=True),
        Binding("s", "cycle_sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
    ]

    peer_rows: reactive[tuple[PeerLine, ...]] = reactive(tuple, init=False)
    sort_column: reactive[str] = reactive("name", init=False)
    sort_reverse: reactive[bool] = reactive(False, init=False)

    class PeerChosen(Message):
        """The user picked a peer (Enter on its row)."""

        def __init__(self, peer_id: str) -> None:
            super().__init__()
            self.peer_id = peer_id

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self._shown: dict[str, PeerLine] = {}
        self._widths = {c.key: c.width for c in _COLUMNS}

    def on_mount(self) -> None:
        self._rebuild()

    # -- state in ----------------------------------------------------------
    def watch_peer_rows(self, rows: tuple[PeerLine, ...]) -> None:
        keep = self._cursor_peer()
        wanted = {row.id: row for row in rows}
        for gone in self._shown.keys() - wanted.keys():
            self.remove_row(gone)
            del self._shown[gone]
        for row in rows:
            before = self._shown.get(row.id)
            if before is None:
                self.add_row(*(c.cell(row) for c in _COLUMNS), key=row.id)
            elif before != row:
                for column in _COLUMNS:
                    self.update_cell(row.id, column.key, column.cell(row))
            self._shown[row.id] = row
        if self._order() != [row.key.value for row in self.ordered_rows]:
            self._apply_sort(keep)

    def watch_sort_column(self) -> None:
        self._apply_sort(self._cursor_peer())

    def watch_sort_reverse(self) -> None:
        self._apply_sort(self._cursor_peer())

    def _order(self) -> list[str]:
        """Peer ids in the order the sort column asks for."""
        column = next(c for c in _COLUMNS if c.key == self.sort_column)
        return sorted(self._shown, key=lambda peer_id: column.sort_value(self._shown[peer_id]), reverse=self.sort_reverse)

    def _apply_sort(self, keep: str | None) -> None:
        """Order rows by the sort column; the cursor stays on the peer `keep` if it is still listed."""
        rank = {peer_id: index for index, peer_id in enumerate(self._order())}
        self.sort("id", key=lambda cell: rank[cell.peer_id])
        if keep is not None and keep in self._shown:
            self.move_cursor(row=self.get_row_index(keep), scroll=False)

    def _cursor_peer(self) -> str | None:
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:  # an empty table
            return None

    # -- layout ------------------------------------------------------------
    @on(Resize)
    def _fit_columns(self, event: Resize) -> None:
        widths = self._widths_for(event.size.width)
        if widths != self._widths:
            self._widths = widths
            self._rebuild()

    def _widths_for(self, available: int) -> dict[str, int]:
        """Fixed columns at their width; the spare cells shared among the flex columns."""
        base = {c.key: c.width for c in _COLUMNS}
        scrollbar = 2
        spare = available - scrollbar - sum(w + 2 * self.cell_padding for w in base.values())
        flexes = [c for c in _COLUMNS if c.flex]
        total_flex = sum(c.flex for c in flexes)
        for column in flexes:
            share = max(0, spare) * column.flex // total_flex
            base[column.key] = min(_FLEX_CAP[column.key], column.width + share)
        return base

    def _rebuild(self) -> None:
        keep = self._cursor_peer()
        self.clear(columns=True)
        for column in _COLUMNS:
            self.add_column(column.label, width=self._widths[column.key], key=column.key)
        for row in self._shown.values():
            self.add_row(*(c.cell(row) for c in _COLUMNS), key=row.id)
        self._apply_sort(keep)

    # -- user actions --------------------------------------------------------
    def action_cycle_sort(self) -> None:
        keys = list(COLUMN_KEYS)
        self.sort_column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self.notify(f"peers sorted by {self.sort_column}", timeout=1.5)

    def action_reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse

    @on(DataTable.RowSelected)
    def _chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.PeerChosen(event.row_key.value))

    @on(DataTable.HeaderSelected)
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key.value or "name"
        if key == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column = key
