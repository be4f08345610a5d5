"""Shared fixtures: real peers on loopback ports, each with its own state directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from federation.node import Node
from federation.settings import PeerSettings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # zeroconf's async API needs asyncio


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., PeerSettings]:
    """PeerSettings for a test peer: port 0, its own home under tmp_path, no model, mDNS off unless asked."""
    counter = iter(range(1000))

    def make(**overrides: Any) -> PeerSettings:
        name = overrides.pop("name", f"peer{next(counter)}")
        values: dict[str, Any] = {"name": name, "port": 0, "home": tmp_path / name, "model": None, "mdns": "off"}
        values.update(overrides)
        return PeerSettings(**values)

    return make


@pytest.fixture
async def model_node(make_settings: Callable[..., PeerSettings]) -> AsyncIterator[Node]:
    """A peer serving the embedded Gemma model, loaded and ready."""
    async with Node(make_settings(name="model", model="default", n_ctx=2048)) as node:
        await node.wait_ready()
        yield node


@pytest.fixture
def start_node(make_settings: Callable[..., PeerSettings]) -> Callable[..., AbstractAsyncContextManager[Node]]:
    """`async with start_node(model=None, ...) as node:` for tests that need several peers."""

    def start(**overrides: Any) -> AbstractAsyncContextManager[Node]:
        return Node(make_settings(**overrides))

    return start


async def introduce(*nodes: Node) -> None:
    """Make every node know every other, over HTTP, as `--peer URL` would (card fetched and verified)."""
    for node in nodes:
        for other in nodes:
            if other is not node:
                await node.add_peer(other.mcp_url)
