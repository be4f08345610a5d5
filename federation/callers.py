"""Who is calling a peer's model, as the key of the model queue's turns and shares (`servers.fair_queue`).

What reaches a tool call today, and so what this uses, best first:

1. The peer that passed the call on: the `caller` of the trace in the
   request's `_meta` (set by the forwarding peer, from its own id). Every call
   that crossed the mesh has one, so two peers asking through the mesh get
   turns of their own even when they share an address (a relay, one host).
   It is the forwarding peer's claim, not a proof: in a mesh only members get
   in at all (the mesh credential), but a member could claim other ids. Once
   membership proof authenticates peer ids, the proven id belongs here.
2. Otherwise the caller's own connection, as the model server tells it
   (`servers.llama.connection_caller`): its MCP session, else its address.

A call the peer makes for a caller of its own (`mesh_ask` served by the local
model) runs with that caller's request, so it counts as theirs.
"""

from __future__ import annotations

from collections.abc import Hashable

from mcp.server.mcpserver import Context

from federation.trace import Trace
from servers.llama import connection_caller

__all__ = ["mesh_caller"]


def mesh_caller(ctx: Context) -> Hashable:
    """The peer id that passed this call on, else the connection (see the module docstring)."""
    peer = Trace.from_meta(dict(ctx.request_context.meta or {})).caller
    return f"peer {peer}" if peer else connection_caller(ctx)
