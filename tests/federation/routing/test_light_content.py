"""Light peers (no resources, templates or prompts of their own) hold no MCP session with each other,
yet content one of them gains reaches the others, one hop or two away."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest
from mcp.server.mcpserver import MCPServer

from federation.card import verify_card
from federation.client import connect
from federation.content import ROUTE_META_KEY
from federation.node import Node
from tests.support.mesh import introduce
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

StartNode = Callable[..., AbstractAsyncContextManager[Node]]


def _fresh_content(owner: str) -> MCPServer:
    server = MCPServer("fresh", log_level="WARNING")

    @server.resource(f"ai://{owner}/fresh.md", name="fresh", mime_type="text/markdown")
    def fresh() -> str:
        return "# Fresh\n\nWritten after the mesh formed."

    @server.prompt()
    def cheer(who: str) -> str:
        """Cheer someone on."""
        return f"Go, {who}!"

    return server


def _resources(node: Node) -> set[str]:
    return {o.key for o in node.content.offers("resource")}


async def test_a_light_mesh_holds_no_session_until_a_peer_gains_content_which_the_others_then_offer(start_node: StartNode) -> None:
    async with start_node(name="alice") as alice, start_node(name="bob") as bob, start_node(name="carol") as carol:
        nodes = [alice, bob, carol]
        await introduce(*nodes)
        for node in nodes:
            cards = {f"ai://{other.name}/" for other in nodes}
            await wait_until(lambda node=node, cards=cards: cards <= _resources(node), f"{node.name} offers every peer's card")  # type: ignore[misc]
        await anyio.sleep(1.5)  # a few health rounds: nothing opens a session
        assert [node.forwarder.sessions.peers() for node in nodes] == [set(), set(), set()], "light peers asked each other nothing"
        unchanged = alice.card()
        await anyio.sleep(0.01)
        assert unchanged.content is False and alice.card() == unchanged, "signed once while it says the same"

        await alice.content.add_server(_fresh_content("alice"))
        assert verify_card(alice.card().model_dump_json()).content is True, "the card says the peer now offers content, signed anew"
        for node in (bob, carol):
            await wait_until(lambda node=node: "ai://alice/fresh.md" in _resources(node), f"{node.name} offers alice's new resource")  # type: ignore[misc]
        async with connect(carol.mcp_url) as client:
            note = await client.read_resource("ai://alice/fresh.md")
            prompt = await client.get_prompt("alice__cheer", {"who": "Ada"})
            card = await client.read_resource("ai://bob/")  # built from bob's card; reading it asks bob
        assert "Written after the mesh formed." in note.contents[0].text  # type: ignore[union-attr]
        assert "Go, Ada!" in prompt.messages[0].content.text  # type: ignore[union-attr]
        assert card.contents[0].text.startswith("# bob")  # type: ignore[union-attr]
        assert carol.forwarder.sessions.peers() == {alice.peer_id, bob.peer_id}


async def test_content_gained_two_hops_away_is_passed_on_by_a_light_peer(start_node: StartNode) -> None:
    """carol knows only bob, bob knows alice; all light. alice gains content: bob offers it, so bob's card says so, so carol follows bob."""
    async with start_node(name="alice") as alice, start_node(name="bob") as bob, start_node(name="carol") as carol:
        await introduce(alice, bob)
        await carol.add_peer(bob.mcp_url)
        await wait_until(lambda: "ai://bob/" in _resources(carol), "carol offers bob's card")
        assert "ai://alice/" not in _resources(carol), "a light peer passes on no cards: carol does not follow bob"

        await alice.content.add_server(_fresh_content("alice"))
        await wait_until(lambda: bob.card().content is True, "bob's card says he passes content on")
        await wait_until(lambda: "ai://alice/fresh.md" in _resources(carol), "carol offers alice's resource, two hops away")
        offer = next(o for o in carol.content.offers("resource") if o.key == "ai://alice/fresh.md")
        assert offer.item.meta is not None and offer.item.meta[ROUTE_META_KEY] == [alice.peer_id, bob.peer_id, carol.peer_id]
        async with connect(carol.mcp_url) as client:
            note = await client.read_resource("ai://alice/fresh.md")
        assert "Written after the mesh formed." in note.contents[0].text  # type: ignore[union-attr]
