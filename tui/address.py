"""Where the watched node's endpoints are, from the one URL the user gave.

A node is reached at its base URL (`http://127.0.0.1:8801`) or through a
relay (`https://relay.example/p/<peer_id>`); every endpoint hangs off that
base, so `<base>/events`, `<base>/peers`, `<base>/mcp` work either way. A URL
ending in `/mcp` (what `mcpfed serve` prints) is accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from federation import CARD_PATH, EVENTS_PATH, HEALTH_PATH, MCP_PATH, PEERS_PATH, ConfigError

__all__ = ["NodeAddress", "card_url_for"]


@dataclass(frozen=True)
class NodeAddress:
    """The watched node's base URL and the endpoints the TUI uses."""

    base: str

    @classmethod
    def parse(cls, url: str) -> NodeAddress:
        """Accept `http(s)://host:port[/prefix][/mcp]`; raise `ConfigError` saying what is wrong."""
        text = url.strip()
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"--node wants a peer's URL like http://127.0.0.1:8801 (or a relay's <relay>/p/<peer-id>), not {url!r}."
            )
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise ConfigError(f"--node {url!r} has a bad port: {exc}.") from exc
        base = text.rstrip("/")
        if base.endswith(MCP_PATH):
            base = base[: -len(MCP_PATH)]
        return cls(base)

    @property
    def events(self) -> str:
        return self.base + EVENTS_PATH

    @property
    def peers(self) -> str:
        return self.base + PEERS_PATH

    @property
    def health(self) -> str:
        return self.base + HEALTH_PATH

    @property
    def card(self) -> str:
        return self.base + CARD_PATH

    @property
    def mcp(self) -> str:
        return self.base + MCP_PATH


def card_url_for(mcp_url: str) -> str:
    """Where a peer's card is, given the MCP URL its table row carries."""
    return NodeAddress.parse(mcp_url).card
