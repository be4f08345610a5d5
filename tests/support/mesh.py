"""Building a mesh by hand in a test, without discovery."""

from __future__ import annotations

from federation.node import Node


async def introduce(*nodes: Node) -> None:
    """Make every node know every other, over HTTP, as `--peer URL` would (card fetched and verified)."""
    for node in nodes:
        for other in nodes:
            if other is not node:
                await node.add_peer(other.mcp_url)
