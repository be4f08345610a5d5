"""Helpers for discovery tests: peers in child processes, and a peer's /events recorded into a list."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import Process

from federation.events import Event
from federation.watch import open_events

FAST_HEALTH_INTERVAL = 0.2
START_DEADLINE = 30.0


class PeerProcess:
    """`mcpfed serve --model none` in a child process, so SIGKILL is a real crash."""

    def __init__(self, process: Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.mcp_url = ""

    async def read_url(self) -> str:
        assert self.process.stdout is not None
        buffered = b""
        with anyio.move_on_after(START_DEADLINE):
            while b"\n" not in buffered:
                try:
                    buffered += await self.process.stdout.receive()
                except anyio.EndOfStream:
                    break
        if b"\n" not in buffered:
            pytest.fail(f"peer process did not start: {self.log.read_text()[-2000:]}")
        self.mcp_url = buffered.decode().strip().splitlines()[-1]
        return self.mcp_url

    async def stop(self, signum: int) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signum)
            with anyio.move_on_after(10):
                await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


SpawnPeer = Callable[..., Awaitable[PeerProcess]]


@asynccontextmanager
async def recorded_events(url: str) -> AsyncIterator[list[Event]]:
    """Collect a peer's `/events` (over real SSE) into a list while the block runs."""
    events: list[Event] = []
    async with httpx.AsyncClient(trust_env=False) as http, anyio.create_task_group() as task_group:
        subscribed = anyio.Event()

        async def read() -> None:
            async with open_events(url, http) as stream:
                async for event in stream:
                    if event.kind == "hello":
                        subscribed.set()
                    events.append(event)

        task_group.start_soon(read)
        with anyio.fail_after(5):
            await subscribed.wait()
        yield events
        task_group.cancel_scope.cancel()
