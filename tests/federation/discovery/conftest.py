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
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

from federation.node import Node
from federation.settings import PeerSettings
from tests.support.discovery import FAST_HEALTH_INTERVAL, PeerProcess, SpawnPeer
from tests.support.hostile import Announcer
from tests.support.paths import REPO


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




@pytest.fixture
async def announcer() -> AsyncIterator[Announcer]:
    """Announces crafted mDNS instances on loopback, as anyone on a LAN can."""
    zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        yield Announcer(zc)
    finally:
        await zc.async_close()
