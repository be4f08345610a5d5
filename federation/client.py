"""Talking to one peer's MCP endpoint with the SDK client, errors translated.

The CLI, the demo and tests all connect the same way: one long-lived session
per peer, a clear `PeerError` when the peer is not there, and tool errors
turned into `ToolCallError` with the peer's own message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx2
import mcp.types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import METHOD_NOT_FOUND

from federation.errors import FederationError, PeerError, ToolCallError
from federation.tls import client_context, verify_hint
from federation.urls import user_url

__all__ = ["connect", "call_tool", "result_text"]

TextCallback = Callable[[str], Awaitable[None]]
"""Where streamed text goes: each piece of an answer as it arrives (the CLI, `Mesh.ask`, workflows)."""

_TIMEOUT = httpx2.Timeout(10.0, read=300.0)


def _root_cause(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def connect(url: str, *, headers: dict[str, str] | None = None) -> AsyncIterator[Client]:
    """An open SDK `Client` on `url` (completed by `user_url`), or `PeerError` saying why there is none."""
    url = user_url(url)
    try:
        async with httpx2.AsyncClient(headers=headers or {}, timeout=_TIMEOUT, verify=client_context()) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                yield client
    except (httpx2.HTTPError, OSError, MCPError) as exc:
        raise PeerError(_unreachable(url, exc)) from exc
    except BaseExceptionGroup as group:
        cause = _root_cause(group)
        if isinstance(cause, FederationError):  # raised by the caller's own block (ToolCallError…): unwrap the SDK's groups
            raise cause from None
        if isinstance(cause, (httpx2.HTTPError, OSError, MCPError)):
            raise PeerError(_unreachable(url, cause)) from cause
        raise


def _unreachable(url: str, cause: BaseException) -> str:
    if isinstance(cause, MCPError) and (cause.error.code, cause.error.message) == (METHOD_NOT_FOUND, "Not Found"):  # HTTP 404
        hint = "is it the MCP URL a peer printed, like http://127.0.0.1:8801/mcp" if url.endswith("/mcp") else f"did you mean {url.rstrip('/')}/mcp"
        return f"nothing answers MCP at {url}; {hint}?"
    if isinstance(cause, MCPError):  # the peer (or a relay) answered and said why
        return f"the peer at {url} refused the connection: {cause}"
    if untrusted := verify_hint(cause):
        return f"cannot reach the peer at {url}: {untrusted}."
    return f"cannot reach the peer at {url}: {cause}. Is `mcpfed serve` running there?"


def result_text(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def call_tool(
    client: Client,
    tool: str,
    arguments: dict[str, Any],
    *,
    on_text: TextCallback | None = None,
    meta: dict[str, Any] | None = None,
) -> types.CallToolResult:
    """Call a tool; streamed text (progress messages) goes to `on_text`; errors raise `ToolCallError`."""

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if on_text is not None and message:
            await on_text(message)

    try:
        result = await client.call_tool(tool, arguments, progress_callback=on_progress, meta=cast(types.RequestParamsMeta | None, meta))  # an open map: any dict is one
    except MCPError as exc:
        raise ToolCallError(f"{tool}: {exc.error.message}") from exc
    if result.is_error:
        raise ToolCallError(result_text(result) or f"{tool} failed without a message")
    return result
