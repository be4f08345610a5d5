"""Shared fixtures: real peers on loopback ports, each with its own state directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from federation.node import Node
from federation.settings import PeerSettings
from servers.embedded_models import model_path
from tests.support.models import BASE_MODEL

pytest_plugins = ["pytester", "tests.support.leaks", "tests.support.blocking", "tests.support.postgres", "tests.support.discovery", "tests.support.netns"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """asyncio (zeroconf's async API needs it); session-scoped so a module may share one async fixture, e.g. a loaded model."""
    return "asyncio"


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
    """A peer serving the embedded base Gemma model, loaded and ready."""
    async with Node(make_settings(name="model", model=BASE_MODEL, n_ctx=2048)) as node:
        await node.wait_ready()
        yield node


@pytest.fixture
def start_node(make_settings: Callable[..., PeerSettings]) -> Callable[..., AbstractAsyncContextManager[Node]]:
    """`async with start_node(model=None, ...) as node:` for tests that need several peers."""

    def start(**overrides: Any) -> AbstractAsyncContextManager[Node]:
        return Node(make_settings(**overrides))

    return start


@pytest.fixture
def unloadable_model(tmp_path: Path) -> Path:
    """A GGUF whose header is sound but names an architecture llama.cpp does not know.

    Sparse: the header is copied, the rest is a hole, so no 250 MB copy is written.
    """
    source = model_path(BASE_MODEL)
    with source.open("rb") as stream:
        head = stream.read(16 << 20)
    target = tmp_path / "unknown-arch.gguf"
    with target.open("wb") as out:
        out.write(head.replace(b"gemma3", b"gemmaX"))
        out.truncate(source.stat().st_size)
    return target
