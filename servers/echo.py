"""A trivial MCP server with one tool, `echo`: the yardstick for what serving costs.

bench/ hosts it on a peer and beside a bare SDK server to measure what the
peer's machinery adds to a call; it is also the quickest check that an MCP
client can reach something.

    python -m servers.echo [--port 8812 | --stdio]
"""

from __future__ import annotations

import argparse

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from servers.standalone import add_transport_args, serve

__all__ = ["build_server", "main"]


def build_server() -> MCPServer:
    server = MCPServer("echo", version="0.1.0", log_level="WARNING")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False))
    def echo(text: str) -> str:
        """Return `text` unchanged."""
        return text

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m servers.echo", description=__doc__.splitlines()[0])
    add_transport_args(parser, port=8812)
    serve(build_server(), parser.parse_args(argv))


if __name__ == "__main__":
    main()
