"""Protocol names, paths and timing defaults, in one place so they are documented once."""

from __future__ import annotations

PROTOCOL_VERSION = "1"
"""Bumped when the card, TXT record or tunnel frames change incompatibly."""

MCP_PATH = "/mcp"
CARD_PATH = "/peer"
CARD_MARKDOWN_PATH = "/peer.md"
HEALTH_PATH = "/health"
PEERS_PATH = "/peers"
EVENTS_PATH = "/events"
METRICS_PATH = "/metrics"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8801
DEFAULT_CONTEXT = 4096

MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Largest JSON-RPC body a peer accepts on /mcp (the SDK's own default)."""

LEDGER_FLUSH_SECONDS = 0.2
"""Call records are written in batches this often, off the request path."""

LEDGER_QUEUE_LIMIT = 10_000
"""Records waiting to be written beyond this are dropped (and counted), never block a call."""

HOME_ENV = "MCPFED_HOME"
"""Environment variable that overrides the state directory."""

TRACE_META_KEY = "mcpfed/trace"
"""Request `_meta` key carrying {trace_id, span_id, parent, hop, visited, caller}."""

# -- mesh membership and relays ----------------------------------------------
MESH_FILE = "mesh.json"
"""The stored mesh (id, name, secret, relays) in the state directory, mode 0600."""

JOIN_TOKEN_PREFIX = "mcpfed1."
"""Join tokens are this prefix + base64url(JSON); the digit is the token format version."""

DEFAULT_RELAY_PORT = 8800
TUNNEL_PATH = "/tunnel"
"""The relay's WebSocket endpoint that peers dial out to."""

RELAYED_PREFIX = "/p/"
"""`<relay>/p/<peer id>/mcp` reaches a peer through its tunnel."""

RELAY_BACKOFF_FIRST_SECONDS = 0.1
RELAY_BACKOFF_MAX_SECONDS = 1.5
"""Reconnect delays double from the first to the max, each jittered to 50–100 %: a restarted relay has its peers back within ~2 s."""

RELAY_CONNECT_SECONDS = 5.0
"""Deadline for the WebSocket handshake plus the challenge exchange."""

RELAY_DIRECTORY_SECONDS = 2.0
"""How often a peer reads each relay's `/peers` (and re-checks its own card digest)."""

RELAY_PRESENCE_SECONDS = 10.0
"""A relay refreshes `seen_at` of its tunnelled peers this often in its store; rows older than 3× are offline."""
