"""Helpers for TUI tests: the app watching a URL, retrying fast."""

from __future__ import annotations

from tui.address import NodeAddress
from tui.app import MeshApp
from tui.asking import MeshAsker
from tui.feed import Backoff, HttpFeed

FAST_BACKOFF = Backoff(first=0.1, cap=0.4)
ANSWER_TOKENS = 16  # enough to see streaming; the shared test machine generates slowly


def app_for(url: str, *, headers: dict[str, str] | None = None) -> MeshApp:
    """The TUI watching `url`, retrying fast (tests stop and restart nodes)."""
    address = NodeAddress.parse(url)
    feed = HttpFeed(address, headers=headers, backoff=FAST_BACKOFF, refresh_seconds=1.0)
    asker = MeshAsker(address.mcp, headers=headers, max_tokens=ANSWER_TOKENS)
    return MeshApp(feed, asker, url=address.base, card_headers=headers)
