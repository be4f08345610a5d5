"""A trivial MCP server: `echo`, the yardstick for what serving costs, and `ask`, which asks the user.

bench/ hosts it on a peer and beside a bare SDK server to measure what the
peer's machinery adds to a call; it is also the quickest check that an MCP
client can reach something. `ask` is the quickest check of the way back: a
tool that needs the user's input reaches the user's client (elicitation), in
either protocol era and across the mesh's hops.

    python -m servers.echo [--port 8812 | --stdio]
"""

from __future__ import annotations

import argparse
from typing import Annotated

from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from servers.standalone import add_transport_args, serve

__all__ = ["Answer", "build_server", "main"]


class Answer(BaseModel):
    """One line of text from the user."""

    answer: str = Field(description="Your answer.")


def _ask_user(question: str) -> Elicit[Answer]:
    """The question goes to the user's client: as `elicitation/create` (2025-11-25) or an `input_required` result (2026-07-28)."""
    return Elicit(question, Answer)


def build_server() -> MCPServer:
    server = MCPServer("echo", version="0.1.0", log_level="WARNING")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False))
    def echo(text: str) -> str:
        """Return `text` unchanged."""
        return text

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    def ask(question: str, reply: Annotated[ElicitationResult[Answer], Resolve(_ask_user)]) -> str:
        """Ask the user `question` and return their answer, or say that they declined or cancelled."""
        if reply.action == "accept":
            return reply.data.answer
        return f"The user {'declined' if reply.action == 'decline' else 'cancelled'} the question; no answer."

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m servers.echo", description=__doc__.splitlines()[0])
    add_transport_args(parser, port=8812)
    serve(build_server(), parser.parse_args(argv))


if __name__ == "__main__":
    main()
