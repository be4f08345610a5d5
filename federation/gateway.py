"""The stdio gateway: the whole mesh as one MCP server for Claude Desktop, Gemini CLI, any client.

`mcpfed gateway` joins the mesh as a light member (no model: an ephemeral
loopback port, discovery, the router) and speaks MCP over stdin/stdout with
the same tools every peer's `/mcp` offers: `mesh_peers`, `mesh_ask`,
`mesh_call`, `mesh_fan_out` and `<peer>__<tool>`. When peers come and go the
client gets `notifications/tools/list_changed` (one per burst of changes).
stdout carries only MCP; every log line goes to stderr.

Clients list tools once, when they start the gateway, so it takes its first
look at the mesh before it answers (`federation.discovery.ready`: named and
remembered peers, a short mDNS settle, their tools; at most
`FIRST_LOOK_MAX_SECONDS`) and says on stderr what it found, e.g.
`gateway ready: 3 peers (alice, bob, notes) in 1.5 s`. A `--peer` that cannot
be admitted stops it with an error that says why.
"""

from __future__ import annotations

import logging
import sys

from mcp.server.lowlevel import NotificationOptions
from mcp.server.stdio import stdio_server

from federation.discovery.ready import first_look
from federation.node import Node
from federation.settings import PeerSettings

__all__ = ["run_gateway"]


async def run_gateway(settings: PeerSettings) -> None:
    """Serve the mesh over stdio until the client closes stdin."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True)
    async with Node(settings) as node:
        look = await first_look(node.peers, node.services)
        print(look.summary("gateway"), file=sys.stderr, flush=True)
        look.raise_for_named()
        server = node.tools.server
        options = server.create_initialization_options(NotificationOptions(tools_changed=True, prompts_changed=True, resources_changed=True))
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, options)
