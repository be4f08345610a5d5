"""A tiny stdio MCP server for the sharing tests: `echo`, `slow` (reports progress), `pid`.

`python stdio_child.py` serves over stdio; `python stdio_child.py --crash` writes a
complaint to stderr and exits at once, like a server missing its configuration.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("stdio-child", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Return `text` unchanged."""
    return text


@server.tool()
async def slow(steps: int, ctx: Context) -> str:
    """Count to `steps`, reporting progress at each step."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step}")
        await anyio.sleep(0.02)
    return f"done {steps}"


@server.tool()
def pid() -> int:
    """This process's id, so a test can kill it."""
    return os.getpid()


if __name__ == "__main__":
    if "--crash" in sys.argv:
        sys.stderr.write("stdio-child: missing configuration file settings.toml\n")
        sys.exit(3)
    print("stdio-child starting", file=sys.stderr)
    server.run()
