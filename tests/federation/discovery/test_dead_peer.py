"""A peer killed mid-call: what its callers see afterwards (the peer table, the router, a call by its tool's name)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import pytest
from mcp import Client

from federation.client import result_text
from federation.node import Node
from tests.support.discovery import SpawnPeer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

StartNode = Callable[..., AbstractAsyncContextManager[Node]]


@asynccontextmanager
async def client_of(node: Node, mode: str) -> AsyncIterator[Client]:
    async with Client(node.mcp_url, mode=mode) as client:  # type: ignore[arg-type]
        yield client


async def test_a_killed_peer_is_idle_and_its_tools_say_it_is_unreachable(mdns_node: StartNode, spawn_peer: SpawnPeer) -> None:
    victim = await spawn_peer("victim", "--mdns", "off", "--ctx", "2048", model="default")
    async with mdns_node(name="caller", mdns="off") as caller:
        await caller.add_peer(victim.mcp_url)
        await wait_until(lambda: any(t.name == "victim__generate" for t in caller.tools.tools), "the victim's tools listed", timeout=60)
        victim_id = caller.peers.find("victim").id
        outcome: dict[str, object] = {}

        async def long_generation() -> None:
            async with client_of(caller, "legacy") as client:
                outcome["result"] = await client.call_tool("victim__generate", {"prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", "max_tokens": 1500})

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(long_generation)
            await wait_until(lambda: caller.peers.get(victim_id).in_flight == 1 and caller.forwarder.outstanding[victim_id] == 1, "the generation running, as the victim reports", timeout=30)
            await victim.stop(signal.SIGKILL)
        assert outcome["result"].is_error  # type: ignore[attr-defined]
        await wait_until(lambda: caller.peers.get(victim_id).status == "dead", "the victim marked dead")
        assert caller.peers.get(victim_id).in_flight == 0 and caller.forwarder.outstanding[victim_id] == 0
        assert "victim__generate" not in {t.name for t in caller.tools.tools}, "a dead peer's tools are not offered"
        for mode in ("legacy", "auto"):  # the SDK path and the fast forward path
            async with client_of(caller, mode) as client:
                result = await client.call_tool("victim__generate", {"prompt": "Hi", "max_tokens": 2})
            assert result.is_error and f"peer victim ({victim_id}) is unreachable (last seen" in result_text(result), mode
