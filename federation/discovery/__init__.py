"""How peers find each other and keep track of who is alive.

Each part is a node *service* (an async context manager), entered once the
node serves HTTP and exited before it stops. Each is handed the parts of the
node it uses (peer table, event bus, store, settings, ...), not the whole
`Node`; the node assembles them (`federation.node`):

- `recall_peers`: re-verifies the peers a previous run left in the store.
- `persist_peers`: mirrors the peer table into the store (`mcpfed peers`).
- `health_monitor`: `/health` pings, suspect/dead after misses, revival.
- `static_peers`: `--peer URL` peers, retried until they answer.
- `mdns_discovery`: advertise on and browse the LAN, admit verified cards.

The node runs them by default, static peers and mDNS when the settings ask
for them. See docs/discovery.md.
"""

from __future__ import annotations

from federation.discovery.health import HealthMonitor, health_monitor
from federation.discovery.mdns import MdnsDiscovery, mdns_discovery
from federation.discovery.persist import persist_peers, recall_peers
from federation.discovery.static import static_peers

__all__ = [
    "HealthMonitor",
    "MdnsDiscovery",
    "health_monitor",
    "mdns_discovery",
    "persist_peers",
    "recall_peers",
    "static_peers",
]

