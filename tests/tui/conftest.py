"""Fixtures for TUI tests: the app watching a real node, real signed cards of peers that are not running."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from textual.pilot import Pilot

from federation.card import PeerCard, sign_card
from federation.identity import Identity
from federation.node import Node
from tests.support.tui import app_for
from tests.support.waiting import wait_until


@pytest.fixture
def watch() -> Callable[..., AbstractAsyncContextManager[Pilot]]:
    """`async with watch(node_or_url, size=(100, 30)) as pilot:` — the TUI running headless on a real node."""

    @asynccontextmanager
    async def run(target: Node | str, size: tuple[int, int] = (120, 36)) -> AsyncIterator[Pilot]:
        url = target.url if isinstance(target, Node) else target
        app = app_for(url)
        async with app.run_test(size=size) as pilot:
            if isinstance(target, Node):
                await wait_until(lambda: app.connection.phase == "connected", "the app shows it is connected")
            yield pilot

    return run


@pytest.fixture
def signed_cards() -> Callable[[int], list[PeerCard]]:
    """Real signed cards of `n` peers that are not running (each with its own key)."""

    def make(n: int) -> list[PeerCard]:
        cards = []
        for i in range(n):
            identity = Identity.generate()
            blank = PeerCard(id=identity.peer_id, name=f"peer{i:03d}", pubkey="", endpoints=[f"http://127.0.0.1:{20000 + i}/mcp"])
            cards.append(sign_card(blank, identity))
        return cards

    return make
