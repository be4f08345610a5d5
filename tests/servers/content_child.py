"""A stdio MCP server for the protocol tests: a resource, a prompt, and `grow`, which adds one of each (and a tool).

Like a third-party 2025-era stdio server, it announces each change with plain
`notifications/*/list_changed` on its session.
"""

from __future__ import annotations

import mcp.types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.mcpserver.resources import TextResource

server = MCPServer("content-child", log_level="WARNING")


@server.resource("kid://readme", mime_type="text/markdown")
def readme() -> str:
    return "# Kid\n\nA shared stdio server's resource."


@server.prompt()
def kid_hello(who: str) -> str:
    """Say hello to someone."""
    return f"Hello, {who}, from the kid."


@server.tool()
async def grow(tag: str, ctx: Context) -> str:
    """Add the resource kid://grown/<tag>, the prompt grown_<tag> and the tool grown_<tag>, and say so."""
    server.add_resource(TextResource(uri=f"kid://grown/{tag}", name=tag, text=f"# {tag}\n", mime_type="text/markdown"))
    server.add_prompt(Prompt.from_function(lambda: f"grown {tag}", name=f"grown_{tag}"))
    server.add_tool(lambda: tag, name=f"grown_{tag}")
    for notification in (types.ResourceListChangedNotification(), types.PromptListChangedNotification(), types.ToolListChangedNotification()):
        await ctx.request_context.session.send_notification(notification)
    return tag


if __name__ == "__main__":
    server.run()
