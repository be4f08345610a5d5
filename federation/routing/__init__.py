"""Routing: every call this peer passes on to another peer, and the mesh's tools.

- `forwarder`: the one `Forwarder` every forwarded call goes through, with its
  two transports (`transports`: message level, SDK session).
- `asgi`: `FastForward`, the ASGI adapter for modern-era `<peer>__<tool>` calls.
- `ledger`: `CallLedger`, the events and ledger rows of calls served and made.
- `router`: the `Router` service, the mesh's tool provider.
- `catalog`: other peers' tools, namespaced as `<peer>__<tool>`.
- `choose`: which peer answers a chat, and which next on failover.
- `sessions`: the per-peer pool of SDK sessions.
- `mesh_tools`: the `mesh_*` MCP server.
- `elicitation`: a remote tool's questions for the user, carried back to the caller in its era.
"""

from federation.routing.asgi import FastForward
from federation.routing.catalog import namespaced
from federation.routing.forwarder import CallRefused, Forwarder
from federation.routing.ledger import CallLedger
from federation.routing.mesh_tools import AskResult, Attempt, FanOutResult
from federation.routing.router import Router
from federation.routing.sessions import PeerGone

__all__ = ["AskResult", "Attempt", "CallLedger", "CallRefused", "FanOutResult", "FastForward", "Forwarder", "PeerGone", "Router", "namespaced"]
