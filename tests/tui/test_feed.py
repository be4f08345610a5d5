"""The feed from a real node's /events: connect, follow, lose it, come back."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest

from federation import CallFinished, PeerDown
from federation.client import connect
from federation.errors import ConfigError
from federation.node import Node
from tests.support.tui import FAST_BACKOFF
from tui.address import NodeAddress
from tui.feed import Backoff, HttpFeed
from tui.wire import Connected, Disconnected, FeedItem

pytestmark = pytest.mark.anyio

StartNode = Callable[..., AbstractAsyncContextManager[Node]]


class Recorder:
    """Collects feed items; `wait_for` returns the first matching one."""

    def __init__(self) -> None:
        self.items: list[FeedItem] = []
        self._arrived = anyio.Event()

    def __call__(self, item: FeedItem) -> None:
        self.items.append(item)
        self._arrived.set()

    async def wait_for(self, kind: type, check: Callable[[FeedItem], bool] = lambda _: True, timeout: float = 5.0) -> FeedItem:
        with anyio.fail_after(timeout):
            while True:
                for item in self.items:
                    if isinstance(item, kind) and check(item):
                        return item
                self._arrived = anyio.Event()
                await self._arrived.wait()


async def test_the_feed_opens_with_the_card_and_table_then_follows_events(start_node: StartNode) -> None:
    async with start_node(name="watched") as watched, start_node(name="alice") as alice, anyio.create_task_group() as tg:
        watched.peers.admit(alice.card(), "static", alice.mcp_url)
        seen = Recorder()
        tg.start_soon(HttpFeed(NodeAddress.parse(watched.url)).run, seen)
        hello = await seen.wait_for(Connected)
        assert isinstance(hello, Connected)
        assert hello.card.id == watched.peer_id and [p.name for p in hello.peers] == ["alice"]
        watched.peers.drop_route(alice.peer_id, "static")
        await seen.wait_for(PeerDown, lambda e: isinstance(e, PeerDown) and e.reason == "left")
        async with connect(watched.mcp_url) as client:
            await client.call_tool("no_such_tool", {})
        finished = await seen.wait_for(CallFinished)
        assert isinstance(finished, CallFinished) and (finished.tool, finished.outcome) == ("no_such_tool", "error")
        tg.cancel_scope.cancel()


async def test_a_lost_node_is_reported_and_retried_until_it_returns(start_node: StartNode) -> None:
    seen = Recorder()
    async with anyio.create_task_group() as tg:
        async with start_node(name="phoenix") as node:
            port = node.port
            tg.start_soon(HttpFeed(NodeAddress.parse(node.url), backoff=FAST_BACKOFF).run, seen)
            await seen.wait_for(Connected)
        lost = await seen.wait_for(Disconnected)
        assert isinstance(lost, Disconnected) and f"127.0.0.1:{port}" in lost.reason
        await seen.wait_for(Disconnected, lambda d: d.attempt >= 3)  # type: ignore[union-attr]
        async with start_node(name="phoenix", port=port):
            await seen.wait_for(Connected, lambda c: seen.items.index(c) > seen.items.index(lost))
        tg.cancel_scope.cancel()


def test_retry_delays_double_up_to_a_cap() -> None:
    backoff = Backoff(first=0.5, cap=4.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


@pytest.mark.parametrize(
    ("given", "base"),
    [
        ("http://127.0.0.1:8801", "http://127.0.0.1:8801"),
        ("http://127.0.0.1:8801/mcp", "http://127.0.0.1:8801"),
        ("https://relay.example/p/abcdefgh12345678/", "https://relay.example/p/abcdefgh12345678"),
    ],
)
def test_node_urls_accept_what_users_paste(given: str, base: str) -> None:
    address = NodeAddress.parse(given)
    assert address.base == base and address.events == base + "/events" and address.mcp == base + "/mcp"


@pytest.mark.parametrize("bad", ["127.0.0.1:8801", "ftp://host", "http://", "http://host:port"])
def test_a_bad_node_url_is_refused_with_an_example(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"http://127\.0\.0\.1:8801|bad port"):
        NodeAddress.parse(bad)
