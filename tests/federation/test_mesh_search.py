"""`mesh_search`: every peer's notes searched at once, ranked and cited as `ai://<peer>/<path>`, the slow ones named."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path

import anyio
import pytest
from mcp.server.mcpserver import MCPServer

from federation.client import connect
from federation.node import Node
from federation.toolhost import HostedServer
from tests.support.mesh import introduce
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

StartNode = Callable[..., AbstractAsyncContextManager[Node]]


def _notes(folder: Path, **notes: str) -> Path:
    folder.mkdir(parents=True)
    for name, text in notes.items():
        (folder / f"{name}.md").write_text(text)
    return folder


def _stalling_notes() -> MCPServer:
    """A peer whose `search_notes` never answers (a stuck disk, an overloaded laptop)."""
    server = MCPServer("stalling", log_level="WARNING")

    @server.tool()
    async def search_notes(query: str, limit: int = 5) -> dict[str, object]:
        """Search notes (never answers)."""
        await anyio.sleep_forever()
        return {}

    return server


@pytest.fixture
async def mesh(start_node: StartNode, tmp_path: Path) -> AsyncIterator[dict[str, Node]]:
    """alice and bob share notes, stuck shares (but never answers), carol shares none; all know each other."""
    alice_notes = _notes(tmp_path / "alice-notes", relay="# Relay\n\nThe relay carries traffic across NAT.\n", mdns="# mDNS\n\nPeers on a LAN.\n")
    bob_notes = _notes(tmp_path / "bob-notes", tunnels="# Tunnels\n\nA relay tunnel is one WebSocket per relay.\n")
    async with AsyncExitStack() as stack:
        nodes = {
            "alice": await stack.enter_async_context(start_node(name="alice", notes=alice_notes)),
            "bob": await stack.enter_async_context(start_node(name="bob", notes=bob_notes)),
            "stuck": await stack.enter_async_context(start_node(name="stuck")),
            "carol": await stack.enter_async_context(start_node(name="carol")),
        }
        await nodes["stuck"].tools.add_provider(HostedServer(_stalling_notes()))
        await introduce(*nodes.values())
        yield nodes


async def test_hits_from_every_peer_come_ranked_and_cited_and_the_silent_peer_is_named(mesh: dict[str, Node]) -> None:
    async with connect(mesh["carol"].mcp_url) as client:
        result = await client.call_tool("mesh_search", {"query": "relay", "deadline_s": 5.0})
    assert not result.is_error, result.content
    answer = result.structured_content
    assert answer is not None
    hits = answer["hits"]
    assert [hit["uri"] for hit in hits] == ["ai://alice/relay.md", "ai://bob/tunnels.md"], "the title match outranks a body match"
    assert hits[0]["score"] > hits[1]["score"]
    assert (hits[0]["peer"], hits[0]["peer_name"], hits[0]["path"], hits[0]["title"]) == (mesh["alice"].peer_id, "alice", "relay.md", "Relay")
    assert "NAT" in hits[0]["snippet"]
    assert answer["searched"] == ["alice", "bob"]
    assert answer["unanswered"] == [{"peer": mesh["stuck"].peer_id, "peer_name": "stuck", "reason": "no answer within 5 s"}]
    assert answer["trace_id"]


async def test_the_asked_peers_own_notes_are_searched_too(mesh: dict[str, Node]) -> None:
    async with connect(mesh["alice"].mcp_url) as client:
        result = await client.call_tool("mesh_search", {"query": "mdns LAN", "limit": 1})
    assert result.structured_content is not None
    assert [hit["uri"] for hit in result.structured_content["hits"]] == ["ai://alice/mdns.md"]


async def test_mesh_search_publishes_its_output_schema(mesh: dict[str, Node]) -> None:
    async with connect(mesh["carol"].mcp_url) as client:
        tool = next(t for t in (await client.list_tools()).tools if t.name == "mesh_search")
    assert tool.output_schema is not None
    assert {"query", "hits", "searched", "unanswered", "trace_id"} <= set(tool.output_schema["properties"])


async def test_a_query_without_words_or_a_mesh_without_notes_says_what_to_do(start_node: StartNode) -> None:
    async with start_node(name="lonely") as lonely, connect(lonely.mcp_url) as client:
        no_words = await client.call_tool("mesh_search", {"query": " ?! "})
        no_notes = await client.call_tool("mesh_search", {"query": "relay"})
    assert no_words.is_error and "the query has no words" in no_words.content[0].text  # type: ignore[union-attr]
    assert no_notes.is_error and "no peer that is up shares notes (`mcpfed serve --notes DIR`)" in no_notes.content[0].text  # type: ignore[union-attr]


async def test_a_peer_that_leaves_is_no_longer_asked(start_node: StartNode, tmp_path: Path) -> None:
    notes = _notes(tmp_path / "notes", relay="# Relay\n")
    async with start_node(name="asker") as asker:
        async with start_node(name="leaver", notes=notes) as leaver:
            await asker.add_peer(leaver.mcp_url)
            async with connect(asker.mcp_url) as client:
                found = await client.call_tool("mesh_search", {"query": "relay"})
            assert found.structured_content is not None and found.structured_content["searched"] == ["leaver"]
        await wait_until(lambda: asker.peers.get(leaver.peer_id) is None or asker.peers.get(leaver.peer_id).status != "up", "the leaver is down", 15)
        async with connect(asker.mcp_url) as client:
            gone = await client.call_tool("mesh_search", {"query": "relay"})
    assert gone.is_error and "no peer that is up shares notes" in gone.content[0].text  # type: ignore[union-attr]
