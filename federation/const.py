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
MODELS_PATH = "/models"
"""Behind the mesh credential: `/models/<sha256>/manifest` and `/models/<sha256>/chunk` (federation.pull.serve)."""
PROOF_PATH = "/mesh/proof"
"""Open, like /health: where peers prove mesh membership to each other (federation.proof)."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8801
DEFAULT_CONTEXT = 4096

MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Largest JSON-RPC body a peer accepts on /mcp (the SDK's own default)."""

CHUNK_BYTES = 4 * 1024 * 1024
"""Chunk size of the manifests a peer signs for the models it shares (a pull verifies chunk by chunk)."""

MAX_CHUNK_BYTES = 16 * 1024 * 1024
"""Longest byte range a holder serves in one request; a manifest with bigger chunks cannot be pulled."""

HEADER_TIMEOUT_SECONDS = 10.0
"""A request's headers must arrive within this long of its first byte (of the connection, for the first request)."""

MAX_CONNECTIONS_PER_ADDRESS = 512
"""Open connections one client address may hold on a peer or relay. Above a forwarding peer's pool (256
connections) plus its discovery client, so a peer forwarding a burst never meets it."""
RELAY_OPEN_FILES_PER_ADDRESS = 0.5
"""A relay's default per-address cap, as a share of the open files it may hold (raised to the hard limit at
start): half. Its clients are peers that share an address by design (one host, one NAT), and each holds a
session with every other through it: N² connections from one address. At the peers' cap of 512, 50 peers
on one host filled it with those sessions, and the peers that attached last had every `/peers` read
refused (503) for good, so they listed no one. Half the open files still leaves the other half to
everyone else, where no cap at all would let one address take them all."""

DEFAULT_RATE_LIMIT = "1000/s"
"""Requests each caller may send to a peer's /mcp (burst: two seconds' worth). A forwarding peer is one caller
for all its users, and a client's back-to-back calls on loopback run at several hundred a second (benchmarks,
a 1,000-call burst through a hop), so the default only caps floods: one address gets at most this, whatever
it sends. Lower it on a peer that faces clients you do not run."""

LEDGER_FLUSH_SECONDS = 0.2
"""Call records are written in batches this often, off the request path."""

LEDGER_QUEUE_LIMIT = 10_000
"""Records waiting to be written beyond this are dropped (and counted), never block a call."""

STOP_GRACE_SECONDS = 10.0
"""On stop, how long a peer waits for the calls it was serving to send their "shutting down" answers.

A generation ends within a token, but not in the middle of reading a long
prompt; after this the HTTP server stops anyway (the model is still freed
only once its worker is done).
"""

HOME_ENV = "MCPFED_HOME"
"""Environment variable that overrides the state directory."""

TRACE_META_KEY = "mcpfed/trace"
"""Request `_meta` key carrying {trace_id, span_id, parent, hop, visited, caller}."""

# -- discovery (docs/discovery.md) -------------------------------------------
SERVICE_TYPE = "_mcp-fed._tcp.local."
"""mDNS service type every peer advertises and browses; instance names are `<name>-<id8>`."""

HEALTH_INTERVAL_SECONDS = 1.0
"""A known peer is pinged (`GET /health`) this often; `DEAD_AFTER_MISSES` (3) misses in a row = dead."""

HEALTH_TIMEOUT_SECONDS = 1.0
"""A health ping not answered within this long counts as a miss (floor for short test intervals)."""

CARD_FETCH_TIMEOUT_SECONDS = 2.0
"""Deadline for fetching an advertised `/peer` (connect + whole body); slower counts as unreachable."""

MAX_CARD_BYTES = 1024 * 1024
"""A `/peer` body larger than this is refused unread (a hostile peer cannot balloon our memory)."""

MDNS_RESOLVE_TIMEOUT_MS = 1000
"""Wait for an instance's SRV/TXT/A records (usually already cached from its announcement)."""

MDNS_REQUERY_SECONDS = 15.0
"""Browse query repeated this often (with known answers), so a peer whose answer was lost still appears."""

DISCOVERY_WORKERS = 4
"""Card fetches that may run at once: a slow or hostile peer holds one worker, never discovery."""

DISCOVERY_QUEUE_LIMIT = 64
"""Instances waiting to be examined; beyond this, announcements are retried later instead of queued."""

DISCOVERY_MAX_INSTANCES = 512
"""mDNS instances tracked at once; under a flood the oldest not-admitted ones are forgotten first."""

DISCOVERY_RETRY_SECONDS = (1.0, 30.0)
"""Backoff (first, cap) for instances whose card could not be fetched, and for static peers."""

STATIC_REFRESH_SECONDS = 10.0
"""A reachable static peer's card is re-fetched this often (it has no mDNS digest to watch)."""

FIRST_LOOK_MAX_SECONDS = 5.0
"""The longest a gateway or `Mesh.connect` waits, before it answers, for the mesh it can already know (federation.discovery.ready)."""

MDNS_SETTLE_SECONDS = 1.5
"""How long a fresh mDNS browse listens before its first look counts as complete.

Peers answer the multicast query sent as browsing starts within ~0.1 s; one
that multicast its record in the last second (to someone else's query) must
wait, and answers ~1 s later (measured on loopback: 0.1-1.4 s)."""

DEAD_FORGET_SECONDS = 600.0
"""A peer dead this long is dropped from the table (mDNS caches a crashed peer for 75 min)."""

PEERS_REFRESH_SECONDS = 10.0
"""Latency and load in the stored peer table are rewritten this often (`mcpfed peers --url` is live)."""


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

ANSWER_RESTARTS_PREFIX = "[answer restarts] "
"""Starts the progress message sent when a routed answer's peer died and the answer starts
again on another peer: what streamed before it is void. Stock clients show it as a line of
text; `Mesh.ask` (its `on_restart`) and the TUI clear the partial answer."""

# -- pooled compute (federation.pooled) ---------------------------------------
LEND_PATH = "/lend/rpc"
"""WebSocket route of a lending peer: a proven member's bytes piped to its loopback-only ggml RPC server."""

LEND_FRAME_BYTES = 1024 * 1024
"""Largest WebSocket message either end of a lend tunnel sends or accepts; a bigger one closes the tunnel (1009)."""

LEND_FIRST_BYTES_SECONDS = 10.0
"""A lend tunnel that carries no byte this long after it opened is closed: an attached host that says nothing holds
the lender for nobody. Once RPC traffic flowed, an idle model keeps its tunnel: WebSocket pings find dead ends."""

LEND_CONNECT_SECONDS = 5.0
"""Deadline for a host to open a lend tunnel (WebSocket handshake), and for the lender to reach its own RPC port."""

SPLIT_FIND_SECONDS = 30.0
"""How long `serve --split` waits for lenders enough to appear in the peer table before it gives up on the model."""
