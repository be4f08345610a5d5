"""The stdio gateway as Claude Desktop runs it: spawned by an MCP client, legacy handshake, mesh tools."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from federation.node import Node

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def test_gateway_offers_the_mesh_over_stdio_and_answers(model_node: Node, tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "federation.cli", "gateway", "--peer", model_node.mcp_url, "--mdns", "off"],
        env=dict(os.environ) | {"MCPFED_HOME": str(tmp_path)},
        cwd=ROOT,
    )
    async with Client(params, mode="legacy") as client:
        with anyio.fail_after(20):
            while f"{model_node.name}__chat" not in {t.name for t in (await client.list_tools()).tools}:
                await anyio.sleep(0.2)
        result = await client.call_tool("mesh_ask", {"prompt": "Say hi.", "max_tokens": 4})
    assert not result.is_error
    assert result.structured_content["peer"] == model_node.peer_id
    assert result.structured_content["usage"]["completion_tokens"] > 0
