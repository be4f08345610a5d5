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
