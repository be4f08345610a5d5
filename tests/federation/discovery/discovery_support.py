"""Helpers for discovery tests: waiting on a condition, peers in child processes, tiny ASGI servers, /events.

A module with a unique name (not conftest) so test files import it unambiguously.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import Process

from federation import listen
from federation.events import Event
from federation.watch import open_events

REPO = Path(__file__).resolve().parents[3]
FAST_HEALTH_INTERVAL = 0.2
START_DEADLINE = 30.0


async def eventually(check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 5.0) -> None:
    """Wait until `check()` holds (a liveness bound, not a timing assertion)."""
    with anyio.move_on_after(timeout):
        while True:
            outcome = check()
            if not isinstance(outcome, bool):
                outcome = await outcome
            if outcome:
                return
            await anyio.sleep(0.02)
    pytest.fail(f"not within {timeout:g} s: {what}")


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


@asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[int]:
    """Serve an ASGI app with uvicorn on 127.0.0.1, any free port; yields the port."""
    async with listen.serve_app(app, lifespan="off", timeout_graceful_shutdown=0) as url:
        yield int(url.rsplit(":", 1)[1])
