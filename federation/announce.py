"""Telling clients that a list changed, in both protocol eras.

A 2026-07-28 client hears it on its `subscriptions/listen` stream (the SDK's
subscription bus); a handshake-era client (Claude Desktop, Gemini CLI, the
stdio gateway's client) has no such stream and gets the plain
`notifications/*/list_changed` on its connection, so every connection that
listed something is remembered while it lasts (weakly: the SDK drops a
connection when its client goes). The SDK hands each request a new
`ServerSession` wrapper, so remembering sessions told a client that had
listed k times k times of each change (and kept every wrapper). Tools,
prompts and resources share one set: a client that listed only prompts still
hears that resources changed.
"""

from __future__ import annotations

import weakref
from typing import Any, Literal

from mcp.server import ServerRequestContext
from mcp.server.connection import Connection
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ToolsListChanged

__all__ = ["ListChanges", "ListKind"]

ListKind = Literal["tools", "prompts", "resources"]

_EVENTS: dict[str, type[ToolsListChanged | PromptsListChanged | ResourcesListChanged]] = {"tools": ToolsListChanged, "prompts": PromptsListChanged, "resources": ResourcesListChanged}
_LEGACY = {"tools": "send_tool_list_changed", "prompts": "send_prompt_list_changed", "resources": "send_resource_list_changed"}


class ListChanges:
    """The clients to tell when one of the peer's lists changes."""

    def __init__(self) -> None:
        self._bus = InMemorySubscriptionBus()
        self._legacy_connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        self.listen = ListenHandler(self._bus)
        """The `subscriptions/listen` handler modern clients follow changes through."""

    def remember(self, ctx: ServerRequestContext[Any]) -> None:
        """Note a handshake-era client's connection: it is told of changes directly."""
        if ctx.protocol_version < "2026":
            # The SDK (2.x) exposes a request's connection only on the session wrapper, privately.
            self._legacy_connections.add(ctx.session._connection)

    def close(self) -> None:
        """End every `subscriptions/listen` stream gracefully (the peer is stopping: the server need not wait for them)."""
        self.listen.close()

    async def announce(self, kind: ListKind) -> None:
        await self._bus.publish(_EVENTS[kind]())
        for connection in list(self._legacy_connections):
            await getattr(connection, _LEGACY[kind])()  # best effort: the SDK drops it if the client has gone
