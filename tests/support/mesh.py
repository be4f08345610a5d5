"""Building a mesh by hand in a test, without discovery."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import mcp.types as types

from federation.client import connect
from federation.node import Node
from federation.toolhost import HostedServer
from servers.echo import build_server as echo_server
from tests.support.waiting import wait_until


async def introduce(*nodes: Node) -> None:
    """Make every node know every other, over HTTP, as `--peer URL` would (card fetched and verified)."""
    for node in nodes:
        for other in nodes:
            if other is not node:
                await node.add_peer(other.mcp_url)


@asynccontextmanager
async def echo_two_hops_away(
    start_node: Callable[..., AbstractAsyncContextManager[Node]],
) -> AsyncIterator[tuple[Node, Node, Node, types.CallToolResult]]:
    """carol -> bob -> alice (who serves echo): carol's `mesh_call` of bob's `alice__echo`, answered, carol's ledger flushed."""
    async with start_node(name="alice") as alice, start_node(name="bob") as bob, start_node(name="carol") as carol:
        await alice.tools.add_provider(HostedServer(echo_server()))
        await introduce(alice, bob)
        await carol.add_peer(bob.mcp_url)
        await wait_until(lambda: "alice__echo" in {t.name for t in bob.tools.tools})
        async with connect(carol.mcp_url) as client:
            result = await client.call_tool("mesh_call", {"peer": "bob", "tool": "alice__echo", "arguments": {"text": "hi"}})
        assert not result.is_error
        await carol.store.flush()
        yield alice, bob, carol, result
