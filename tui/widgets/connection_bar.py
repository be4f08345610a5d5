"""A banner that says when the watched node cannot be reached, and what happens next."""

from __future__ import annotations

from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static

from tui.state import ConnectionState

__all__ = ["ConnectionBar", "describe"]


def describe(state: ConnectionState) -> str:
    if state.phase == "connecting":
        return f"connecting to {state.url}…"
    if state.phase == "unreachable":
        return f"⚠ {state.reason}. Retrying in {state.retry_in:.1f} s (attempt {state.attempt}); press r to retry now."
    return f"connected to {state.url}"


class ConnectionBar(Static):
    """Hidden while connected; otherwise one line saying what is wrong."""

    connection: reactive[ConnectionState] = reactive(ConnectionState, init=False)

    def watch_connection(self, state: ConnectionState) -> None:
        for phase in ("connecting", "connected", "unreachable"):
            self.set_class(state.phase == phase, f"-{phase}")
        self.update(Content(describe(state)))
