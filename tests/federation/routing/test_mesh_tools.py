"""The `mesh_*` tools' faces: `mesh_peers` gives the contract's `PeerRow`s, with their schema published."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
from mcp import Client

from federation import PeerRow
from federation.node import Node
from tests.support.mesh import introduce

pytestmark = pytest.mark.anyio


async def test_mesh_peers_returns_the_peer_rows_of_get_peers_and_publishes_their_schema(start_node: Callable[..., AbstractAsyncContextManager[Node]]) -> None:
    async with start_node(name="front") as front, start_node(name="other") as other:
        await introduce(front, other)
        async with Client(front.mcp_url) as client:
            tool = next(t for t in (await client.list_tools()).tools if t.name == "mesh_peers")
            result = await client.call_tool("mesh_peers", {})
    assert not result.is_error
    rows = [PeerRow.model_validate(row) for row in result.structured_content["result"]]
    assert [row.id for row in rows] == [other.peer_id]
    assert rows == front.peers.snapshot()
    assert tool.output_schema is not None
    item = tool.output_schema["properties"]["result"]["items"]
    described = tool.output_schema.get("$defs", {}).get(item.get("$ref", "").rsplit("/", 1)[-1], item)
    assert set(described["properties"]) == set(PeerRow.model_fields), "the output schema documents every field of the row"
    assert described["properties"]["via"]["description"], "with the row's own field descriptions"
