"""The help screen (`?`): what each pane shows and every key, read from the live bindings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

__all__ = ["HelpScreen", "keys_markdown"]

_GUIDE = files("tui").joinpath("help.md").read_text(encoding="utf-8")
"""Read once at import: compose runs on the event loop, where a file read would block the app."""

KeySection = tuple[str, Sequence[BindingType]]


def keys_markdown(sections: Sequence[KeySection], key_display: Callable[[Binding], str]) -> str:
    """A Markdown table of the bindings, one section per pane."""
    lines = ["## Keys", "", "| where | key | does |", "|---|---|---|"]
    for where, bindings in sections:
        for binding in bindings:
            if isinstance(binding, Binding) and binding.description:
                lines.append(f"| {where} | `{key_display(binding)}` | {binding.description} |")
    lines.append("| everywhere | `tab` / `shift+tab` | move between panes |")
    lines.append("| everywhere | `ctrl+p` | command palette (open a peer, sort, theme…) |")
    return "\n".join(lines)


class HelpScreen(ModalScreen[None]):
    """Pane guide and key table; any of escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close help"),
    ]

    def __init__(self, sections: Sequence[KeySection]) -> None:
        super().__init__()
        self._sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Markdown(_GUIDE + "\n\n" + keys_markdown(self._sections, self.app.get_key_display))
