"""Fixtures for discovery tests: a private mesh per test, fast timings, peers in subprocesses.

Every test gets its own mesh name, so peers of other tests (or other people's
test runs on this machine) announcing on loopback are ignored by mesh tag.
Health pings run every 0.2 s instead of 1 s: a crash is noticed in well under
a second, and no test sleeps for long.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import Process

from federation.events import Event
from federation.node import Node
from federation.settings import PeerSettings
from federation.watch import open_events

REPO = Path(__file__).resolve().parents[3]
FAST_HEALTH_INTERVAL = 0.2
START_DEADLINE = 30.0


@pytest.fixture
def mesh() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def mdns_settings(make_settings: Callable[..., PeerSettings], mesh: str) -> Callable[..., PeerSettings]:
    """Settings for a light peer on loopback mDNS in this test's mesh, with fast health pings."""

    def make(**overrides: Any) -> PeerSettings:
        values: dict[str, Any] = {"mdns": "auto", "mesh": mesh, "health_interval": FAST_HEALTH_INTERVAL}
        return make_settings(**(values | overrides))

    return make


@pytest.fixture
def mdns_node(mdns_settings: Callable[..., PeerSettings]) -> Callable[..., AbstractAsyncContextManager[Node]]:
    def start(**overrides: Any) -> AbstractAsyncContextManager[Node]:
        return Node(mdns_settings(**overrides))

    return start


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


@pytest.fixture
async def spawn_peer(tmp_path: Path, mesh: str) -> AsyncIterator[SpawnPeer]:
    """`await spawn_peer(name, *serve_args, model=, prefix=[...], env={...})`; every process is killed at the end."""
    started: list[PeerProcess] = []

    async def spawn(name: str, *args: str, model: str = "none", prefix: tuple[str, ...] = (), env: dict[str, str] | None = None) -> PeerProcess:
        log = tmp_path / f"{name}-{len(started)}.log"
        command = [*prefix, sys.executable, "-m", "federation.cli", "serve", "--model", model, "--port", "0", "--name", name, "--home", str(tmp_path / name), *args]
        environment = os.environ | {"MCPFED_MESH": mesh, "MCPFED_HEALTH_INTERVAL": str(FAST_HEALTH_INTERVAL), "PYTHONUNBUFFERED": "1"} | (env or {})
        with log.open("wb") as stderr:
            process = await anyio.open_process(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=stderr)
        peer = PeerProcess(process, log)
        started.append(peer)
        await peer.read_url()
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


@asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[int]:
    """Serve an ASGI app with uvicorn on 127.0.0.1, any free port; yields the port."""
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off", timeout_graceful_shutdown=0))
    try:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(server.serve, [sock])
            with anyio.fail_after(5):
                while not server.started:
                    await anyio.sleep(0.005)
            yield sock.getsockname()[1]
            server.should_exit = True
    finally:
        sock.close()
