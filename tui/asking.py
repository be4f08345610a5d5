"""Asking the mesh from the prompt box, through the watched node's `/mcp`.

The node routes the question when it offers `mesh_ask` (the router's tool);
a node without the router but with a model answers with its own `chat`. The
text streams back as MCP progress notifications, handed to `on_text` piece by
piece. Each prompt carries a fresh trace id in the request `_meta`, so the
call log can group everything the question set off.

One MCP session per prompt: prompts come at human pace, and a session that
outlives a node restart would need its own reconnect logic for nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import httpx2

from federation import TRACE_META_KEY, PeerError, ToolCallError, call_tool, connect, result_text
from tui.feed import CONNECT_TIMEOUT, refused_message

__all__ = ["ASK_DEADLINE", "Answer", "Asker", "MeshAsker", "choose_tool", "new_trace_id"]

ASK_DEADLINE = 300.0
"""Seconds a prompt may take end to end before it is abandoned."""

DEFAULT_MAX_TOKENS = 256

TextCallback = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Answer:
    text: str
    tool: str
    trace_id: str
    details: dict[str, Any] = field(default_factory=dict)


class Asker(Protocol):
    """Something that answers prompts, streaming text to `on_text`."""

    async def ask(self, prompt: str, on_text: TextCallback, *, trace_id: str) -> Answer: ...


def choose_tool(offered: set[str], prompt: str, max_tokens: int) -> tuple[str, dict[str, Any]]:
    """`mesh_ask` when the node routes, else its own `chat`; PeerError when it has neither."""
    if "mesh_ask" in offered:
        return "mesh_ask", {"prompt": prompt, "max_tokens": max_tokens}
    if "chat" in offered:
        return "chat", {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    raise PeerError(
        "this node can't answer prompts: it offers neither mesh_ask (the mesh router) nor chat (a model). "
        "Watch a peer started with a model, e.g. `mcpfed serve --model default`."
    )


async def _refused_for_auth(url: str, headers: dict[str, str]) -> bool:
    """Whether the node answers 401/403 at `url`: the SDK reports any HTTP error the same way, so ask plainly."""
    ping = {"jsonrpc": "2.0", "id": 0, "method": "ping"}
    try:
        async with httpx2.AsyncClient(headers=headers, timeout=CONNECT_TIMEOUT) as http:
            response = await http.post(url, json=ping, headers={"Accept": "application/json, text/event-stream"})
    except httpx2.HTTPError:
        return False
    return response.status_code in (401, 403)


class MeshAsker:
    """Asks through one node's MCP endpoint."""

    def __init__(self, mcp_url: str, *, headers: dict[str, str] | None = None, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self.mcp_url = mcp_url
        self._headers = dict(headers or {})
        self._max_tokens = max_tokens

    async def ask(self, prompt: str, on_text: TextCallback, *, trace_id: str) -> Answer:
        meta = {TRACE_META_KEY: {"trace_id": trace_id, "span_id": uuid.uuid4().hex[:16]}}
        try:
            with anyio.fail_after(ASK_DEADLINE):
                async with connect(self.mcp_url, headers=self._headers) as client:
                    offered = {tool.name for tool in (await client.list_tools()).tools}
                    tool, arguments = choose_tool(offered, prompt, self._max_tokens)
                    result = await call_tool(client, tool, arguments, on_text=on_text, meta=meta)
        except TimeoutError as exc:
            raise PeerError(f"no answer within {ASK_DEADLINE:g} s; the mesh may be overloaded") from exc
        except ToolCallError:
            raise
        except PeerError as exc:
            if await _refused_for_auth(self.mcp_url, self._headers):
                raise PeerError(refused_message(self.mcp_url)) from exc
            raise
        structured = result.structured_content if isinstance(result.structured_content, dict) else {}
        text = found if isinstance(found := structured.get("text"), str) else result_text(result)
        return Answer(text=text, tool=tool, trace_id=trace_id, details=structured)


def new_trace_id() -> str:
    return uuid.uuid4().hex
