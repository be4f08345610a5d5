"""The echo server: the trivial tool bench/ measures serving costs with."""

from __future__ import annotations

import pytest
from mcp import Client

from servers.echo import build_server

pytestmark = pytest.mark.anyio


async def test_echo_returns_the_text_unchanged() -> None:
    async with Client(build_server()) as client:
        result = await client.call_tool("echo", {"text": "héllo ✓"})
    assert result.structured_content == {"result": "héllo ✓"}


async def test_echo_without_text_is_a_tool_error() -> None:
    async with Client(build_server()) as client:
        result = await client.call_tool("echo", {})
    assert result.is_error
    assert "text\n  Field required" in result.content[0].text
