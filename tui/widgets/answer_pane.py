"""Where the answer to a prompt streams in, with a one-line status under it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static

__all__ = ["AnswerPane"]

PLACEHOLDER = "Ask the mesh in the box below; the answer streams in here."


class AnswerPane(VerticalScroll):
    """Shows `text` as it grows (kept scrolled to the end) and `status` in the border."""

    text: reactive[str] = reactive("", init=False)
    status: reactive[str] = reactive("", init=False)
    failed: reactive[bool] = reactive(False, init=False)

    def compose(self) -> ComposeResult:
        yield Static(Text(PLACEHOLDER, style="dim"), id="answer-text")

    def watch_text(self, text: str) -> None:
        self.query_one("#answer-text", Static).update(Text(text) if text else Text(PLACEHOLDER, style="dim"))
        self.scroll_end(animate=False)

    def watch_status(self, status: str) -> None:
        self.border_subtitle = status

    def watch_failed(self, failed: bool) -> None:
        self.set_class(failed, "-failed")
