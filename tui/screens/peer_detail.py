"""A peer's detail: its signed card (models, tools, endpoints), figures and recent calls.

The card is fetched from the peer itself (`/peer` beside its MCP URL; the
watched node's from the URL the TUI reaches it by) and verified against the
peer's id, so what is shown is what the peer signed, as it is now. A peer the TUI
cannot reach directly (behind NAT, different network) still shows what the
watched node knows of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import tzinfo
from typing import ClassVar

import httpx2
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Markdown, Static

from federation import CardError, FederationError, PeerCard, card_markdown, verify_card
from tui.feed import AuthRequired, describe_http_error
from tui.state import LoggedCall, LoggedTrace, PeerLine
from tui.widgets.call_log import CallLog

__all__ = ["CardFetcher", "PeerDetailScreen"]

CardFetcher = Callable[[PeerLine], Awaitable[PeerCard]]

RECENT_CALLS = 30


def _figures(row: PeerLine) -> str:
    p50 = "—" if row.p50_ms is None else f"{row.p50_ms:.0f} ms" + (" (ping)" if row.p50_is_ping else "")
    tps = "—" if row.tokens_per_s is None else f"{row.tokens_per_s:.1f}"
    return (
        f"{row.status} via {row.via} · {row.in_flight} in flight · p50 {p50} · {tps} tok/s · "
        f"{row.calls_served} calls served\n{row.url or '(no URL)'}"
    )


class PeerDetailScreen(Screen[None]):
    """One peer, in full; escape goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("r", "reload", "Reload card"),
    ]

    def __init__(
        self,
        row: PeerLine,
        calls: list[LoggedCall],
        names: dict[str, str],
        *,
        fetch_card: CardFetcher,
        tz: tzinfo | None = None,
    ) -> None:
        super().__init__()
        self.row = row
        self._calls = calls[:RECENT_CALLS]
        self._names = names
        self._fetch = fetch_card
        self._tz = tz

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="detail-body"):
            yield Static(Text(_figures(self.row)), id="detail-figures")
            yield Markdown("*loading the card…*", id="detail-card")
            yield CallLog(id="detail-calls", tz=self._tz)
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"{self.row.name} ({self.row.id})"
        calls = self.query_one("#detail-calls", CallLog)
        calls.border_title = f"recent calls ({len(self._calls)})"
        calls.names = self._names
        calls.traces = tuple(LoggedTrace(f"call-{call.seq}", (call,)) for call in self._calls)
        self.query_one("#detail-card").border_title = "card"
        self.action_reload()

    @work(exclusive=True, group="card")
    async def action_reload(self) -> None:
        view = self.query_one("#detail-card", Markdown)
        try:
            card = verify_card(await self._fetch(self.row), expected_id=self.row.id)
        except CardError as exc:
            await view.update(f"**The card failed verification:** {exc}")
        except (httpx2.HTTPError, AuthRequired, OSError, ValueError, FederationError) as exc:
            await view.update(
                f"*Cannot fetch the card from the peer: {describe_http_error(exc, self.row.url)}. "
                "It may not be reachable from here; the figures above are what the watched node knows.*"
            )
        else:
            await view.update("✔ signature verified\n\n" + card_markdown(card, tz=self._tz))
