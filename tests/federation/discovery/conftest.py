"""Fixtures for discovery tests: a private mesh per test, fast timings, peers in subprocesses.

Every test gets its own mesh name, so peers of other tests (or other people's
test runs on this machine) announcing on loopback are ignored by mesh tag.
Health pings run every 0.2 s instead of 1 s: a crash is noticed in well under
a second, and no test sleeps for long.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

from federation.node import Node
from federation.settings import PeerSettings
from tests.support.discovery import FAST_HEALTH_INTERVAL
from tests.support.hostile import Announcer


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
async def announcer() -> AsyncIterator[Announcer]:
    """Announces crafted mDNS instances on loopback, as anyone on a LAN can."""
    zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        yield Announcer(zc)
    finally:
        await zc.async_close()
