"""Helpers for discovery tests: peers in child processes (`mesh` and `spawn_peer` are fixtures: a plugin of tests/conftest.py), and a peer's /events recorded into a list."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import Process

from federation.events import Event
from federation.watch import open_events
from tests.support.paths import REPO

FAST_HEALTH_INTERVAL = 0.2
START_DEADLINE = 30.0


class PeerProcess:
    """`mcpfed serve --model none` in a child process, so SIGKILL is a real crash."""

    def __init__(self, process: Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.mcp_url = ""

    async def read_url(self, timeout: float = START_DEADLINE) -> str:
        assert self.process.stdout is not None
        buffered = b""
        with anyio.move_on_after(timeout):
            while b"\n" not in buffered:
                try:
                    buffered += await self.process.stdout.receive()
                except anyio.EndOfStream:
                    break
        if b"\n" not in buffered:
            pytest.fail(f"peer process did not start: {self.log.read_text()[-2000:]}")
        self.mcp_url = buffered.decode().strip().splitlines()[-1]
        return self.mcp_url

    async def stop(self, signum: signal.Signals) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signum)
            with anyio.move_on_after(10):
                await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


SpawnPeer = Callable[..., Awaitable[PeerProcess]]


@pytest.fixture
def mesh() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def spawn_peer(tmp_path: Path, mesh: str) -> AsyncIterator[SpawnPeer]:
    """`await spawn_peer(name, *serve_args, model=, prefix=[...], env={...}, start_timeout=)`; every process is killed at the end."""
    started: list[PeerProcess] = []

    async def spawn(name: str, *args: str, model: str = "none", prefix: tuple[str, ...] = (), env: dict[str, str] | None = None, start_timeout: float = START_DEADLINE) -> PeerProcess:
        log = tmp_path / f"{name}-{len(started)}.log"
        command = [*prefix, sys.executable, "-m", "federation.cli", "serve", "--model", model, "--port", "0", "--name", name, "--home", str(tmp_path / name), *args]
        environment = os.environ | {"MCPFED_MESH": mesh, "MCPFED_HEALTH_INTERVAL": str(FAST_HEALTH_INTERVAL), "PYTHONUNBUFFERED": "1"} | (env or {})
        with log.open("wb") as stderr:
            process = await anyio.open_process(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=stderr)
        peer = PeerProcess(process, log)
        started.append(peer)
        await peer.read_url(start_timeout)
        return peer

    try:
        yield spawn
    finally:
        with anyio.CancelScope(shield=True):
            for peer in started:
                await peer.stop(signal.SIGKILL)


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
