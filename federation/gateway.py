"""The stdio gateway: the whole mesh as one MCP server for Claude Desktop, Gemini CLI, any client.

`mcpfed gateway` joins the mesh as a light member (no model: an ephemeral
loopback port, discovery, the router) and speaks MCP over stdin/stdout with
the same tools every peer's `/mcp` offers: `mesh_peers`, `mesh_ask`,
`mesh_call`, `mesh_fan_out` and `<peer>__<tool>`. When peers come and go the
client gets `notifications/tools/list_changed`. stdout carries only MCP;
every log line goes to stderr.
"""

from __future__ import annotations

import logging
import sys

from mcp.server.lowlevel import NotificationOptions
from mcp.server.stdio import stdio_server

from federation.node import Node
from federation.settings import PeerSettings

__all__ = ["run_gateway"]


async def run_gateway(settings: PeerSettings) -> None:
    """Serve the mesh over stdio until the client closes stdin."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True)
    async with Node(settings) as node:
        server = node.tools.server
        options = server.create_initialization_options(NotificationOptions(tools_changed=True))
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, options)
