"""Helpers for TUI tests: the app on a URL with fast retries, waiting for what a user would see, serving a bare ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from federation import listen
from textual.pilot import Pilot

from tui.address import NodeAddress
from tui.app import MeshApp
from tui.asking import MeshAsker
from tui.feed import Backoff, HttpFeed

FAST_BACKOFF = Backoff(first=0.1, cap=0.4)
ANSWER_TOKENS = 16  # enough to see streaming; the shared test machine generates slowly


async def wait_until(pilot: Pilot, check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Let the app run until `check()` holds; fail saying `what` was not seen."""
    with anyio.move_on_after(timeout):
        while not check():
            await pilot.pause(0.05)
        return
    raise AssertionError(f"not seen within {timeout:g} s: {what}")


def app_for(url: str, *, headers: dict[str, str] | None = None) -> MeshApp:
    """The TUI watching `url`, retrying fast (tests stop and restart nodes)."""
    address = NodeAddress.parse(url)
    feed = HttpFeed(address, headers=headers, backoff=FAST_BACKOFF, refresh_seconds=1.0)
    asker = MeshAsker(address.mcp, headers=headers, max_tokens=ANSWER_TOKENS)
    return MeshApp(feed, asker, url=address.base, card_headers=headers)


@asynccontextmanager
async def serve_app(asgi_app: object) -> AsyncIterator[str]:
    """Serve an ASGI app on a free loopback port; yields its base URL."""
    async with listen.serve_app(asgi_app, lifespan="off") as url:
        yield url
