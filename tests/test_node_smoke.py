"""The smallest end-to-end check: a model peer answers a real MCP client."""

from __future__ import annotations

import pytest

from federation.client import call_tool, connect
from federation.node import Node

pytestmark = pytest.mark.anyio


async def test_generate_streams_tokens_that_join_to_the_final_text(model_node: Node) -> None:
    pieces: list[str] = []

    async def collect(text: str) -> None:
        pieces.append(text)

    async with connect(model_node.mcp_url) as client:
        result = await call_tool(client, "generate", {"prompt": "Once upon a time", "max_tokens": 12, "seed": 1}, on_text=collect)
    content = result.structured_content
    assert content is not None
    assert content["usage"]["completion_tokens"] == 12
    assert "".join(pieces) == content["text"]
