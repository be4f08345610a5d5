"""`mcpfed tui` in a real terminal (tmux), driven by keystrokes and read off the screen, as a user would."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import pytest

from federation.node import Node
from tests.support.paths import REPO
from tests.support.tmux import TMUX, Terminal

pytestmark = pytest.mark.anyio


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
async def test_a_user_watches_the_mesh_in_a_terminal(start_node: Callable[..., AbstractAsyncContextManager[Node]], tmp_path: Path) -> None:
    term = Terminal(tmp_path / "tmux.sock")
    command = f"env -u COLUMNS -u LINES {sys.executable} -m federation.cli tui --node {{url}}"  # size from the terminal
    async with start_node(name="watched") as watched, start_node(name="alice") as alice:
        await term.tmux("new-session", "-d", "-s", "tui", "-x", "100", "-y", "30", "-c", str(REPO), command.format(url=watched.url))
        try:
            await term.shows("watched")
            watched.peers.admit(alice.card(), "static", alice.mcp_url)
            screen = await term.shows("alice")
            assert "peers" in screen and "topology" in screen and "calls" in screen
            await term.tmux("send-keys", "-t", "tui", "?")
            await term.shows("Watches one peer of the mesh live")
            await term.tmux("send-keys", "-t", "tui", "Escape")
            await term.gone("Watches one peer of the mesh live")  # a key sent at once would read as alt+q
            await term.tmux("send-keys", "-t", "tui", "q")
            with anyio.fail_after(10):
                while await term.alive():
                    await anyio.sleep(0.2)
        finally:
            await term.tmux("kill-server", check=False)
