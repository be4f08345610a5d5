"""A real terminal (tmux on a private socket) for tests that drive `mcpfed tui` by keystrokes and read the screen."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio

from tests.support.waiting import wait_until

TMUX = shutil.which("tmux")


class Terminal:
    """One tmux session on a private socket."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    async def tmux(self, *args: str, check: bool = True) -> str:
        assert TMUX is not None
        done = await anyio.run_process([TMUX, "-S", str(self.socket), *args], check=check)
        return done.stdout.decode()

    async def screen(self) -> str:
        return await self.tmux("capture-pane", "-p", "-t", "tui")

    async def shows(self, text: str, timeout: float = 15.0) -> str:
        with anyio.move_on_after(timeout):
            while text not in (screen := await self.screen()):
                await anyio.sleep(0.2)
            return screen
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{await self.screen()}")

    async def gone(self, text: str, timeout: float = 10.0) -> None:
        async def lacks() -> bool:
            return text not in await self.screen()

        await wait_until(lacks, f"{text!r} gone from the screen", timeout)

    async def alive(self) -> bool:
        done = await anyio.run_process([TMUX, "-S", str(self.socket), "has-session", "-t", "tui"], check=False)  # type: ignore[list-item]
        return done.returncode == 0
