"""Fixtures for TUI tests: the app watching a real node, and a way to wait for what a user would see."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import pytest
from textual.pilot import Pilot

from federation.card import PeerCard, sign_card
from federation.identity import Identity
from federation.node import Node
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


@pytest.fixture
def watch() -> Callable[..., AbstractAsyncContextManager[Pilot]]:
    """`async with watch(node_or_url, size=(100, 30)) as pilot:` — the TUI running headless on a real node."""

    @asynccontextmanager
    async def run(target: Node | str, size: tuple[int, int] = (120, 36)) -> AsyncIterator[Pilot]:
        url = target.url if isinstance(target, Node) else target
        app = app_for(url)
        async with app.run_test(size=size) as pilot:
            if isinstance(target, Node):
                await wait_until(pilot, lambda: app.connection.phase == "connected", "the app shows it is connected")
            yield pilot

    return run


@pytest.fixture
def signed_cards(tmp_path: Path) -> Callable[[int], list[PeerCard]]:
    """Real signed cards of `n` peers that are not running (each with its own key)."""

    def make(n: int) -> list[PeerCard]:
        cards = []
        for i in range(n):
            home = tmp_path / f"card{i}"
            home.mkdir()
            identity = Identity.load_or_create(home)
            blank = PeerCard(id=identity.peer_id, name=f"peer{i:03d}", pubkey="", endpoints=[f"http://127.0.0.1:{20000 + i}/mcp"])
            cards.append(sign_card(blank, identity))
        return cards

    return make


@asynccontextmanager
async def serve_app(asgi_app: object) -> AsyncIterator[str]:
    """Serve an ASGI app on a free loopback port; yields its base URL."""
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(uvicorn.Config(asgi_app, log_level="warning", lifespan="off"))  # type: ignore[arg-type]
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(5):
                while not server.started:
                    await anyio.sleep(0.01)
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
            server.should_exit = True
    finally:
        sock.close()
