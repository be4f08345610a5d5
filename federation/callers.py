"""Who is calling a peer's model, as the key of the model queue's turns and shares (`servers.fair_queue`).

What reaches a tool call today, and so what this uses, best first:

1. The peer that passed the call on. In a mesh with a secret, the issuer of
   the peer token the request carried (`membership.proven_peer`): proven, as
   only a member can mint one. Otherwise (no secret, or a stock client that
   sent the raw secret) the `caller` of the trace in the request's `_meta`,
   the forwarding peer's own claim. Either way two peers asking through the
   mesh get turns of their own even when they share an address (a relay, one host).
2. Otherwise the caller's own connection, as the model server tells it
   (`servers.llama.connection_caller`): its MCP session, else its address.

A call the peer makes for a caller of its own (`mesh_ask` served by the local
model) runs with that caller's request, so it counts as theirs.
"""

from __future__ import annotations

from collections.abc import Hashable

from mcp.server.mcpserver import Context

from federation.membership import proven_peer
from federation.trace import Trace
from servers.llama import connection_caller

__all__ = ["mesh_caller"]


def mesh_caller(ctx: Context) -> Hashable:
    """The peer that passed this call on, proven if it could be, else the connection (see the module docstring)."""
    scope = getattr(ctx.request_context.request, "scope", None)
    peer = (proven_peer(scope) if isinstance(scope, dict) else None) or Trace.from_meta(dict(ctx.request_context.meta or {})).caller
    return f"peer {peer}" if peer else connection_caller(ctx)
