"""How peers find each other and keep track of who is alive.

Each part is a node *service* (`Callable[[Node], AsyncContextManager]`),
entered once the node serves HTTP and exited before it stops:

- `recall_peers`: re-verifies the peers a previous run left in the store.
- `persist_peers`: mirrors the peer table into the store (`mcpfed peers`).
- `health_monitor`: `/health` pings, suspect/dead after misses, revival.
- `static_peers`: `--peer URL` peers, retried until they answer.
- `mdns_discovery`: advertise on and browse the LAN, admit verified cards.

`discovery_services(settings)` picks the ones the settings ask for; the node
runs them by default. See docs/discovery.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from federation.discovery.health import HealthMonitor, health_monitor
from federation.discovery.interfaces import plan_mdns
from federation.discovery.mdns import MdnsDiscovery, mdns_discovery
from federation.discovery.persist import persist_peers, recall_peers
from federation.discovery.static import static_peers
from federation.settings import PeerSettings

if TYPE_CHECKING:
    from federation.node import ServiceFactory

__all__ = [
    "HealthMonitor",
    "MdnsDiscovery",
    "discovery_services",
    "health_monitor",
    "mdns_discovery",
    "persist_peers",
    "recall_peers",
    "static_peers",
]


def discovery_services(settings: PeerSettings) -> list[ServiceFactory]:
    """The discovery services `settings` call for, in start order (they stop in reverse).

    Raises `ConfigError` for a bad `--mdns` here, before the node binds anything.
    """
    services: list[ServiceFactory] = [recall_peers, persist_peers, health_monitor]
    if settings.peers:
        services.append(static_peers)
    if plan_mdns(settings) is not None:
        services.append(mdns_discovery)
    return services
