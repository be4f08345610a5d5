"""Running one of these servers on its own: the transport flags every `python -m servers.X` shares."""

from __future__ import annotations

import argparse

from mcp.server.mcpserver import MCPServer

__all__ = ["add_transport_args", "serve"]


def add_transport_args(parser: argparse.ArgumentParser, *, port: int) -> None:
    """`--host`, `--port` (Streamable HTTP, the default) and `--stdio`."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--stdio", action="store_true", help="speak MCP over stdio instead of HTTP")


def serve(server: MCPServer, args: argparse.Namespace) -> None:
    """Serve until interrupted, over the transport `args` chose."""
    if args.stdio:
        server.run()
    else:
        server.run("streamable-http", host=args.host, port=args.port)
