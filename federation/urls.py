"""A peer's addresses: users and TXT records give a base or an MCP URL; code needs both.

`http://10.0.0.5:8801`, `http://10.0.0.5:8801/` and `http://10.0.0.5:8801/mcp`
all name the same peer; `base_url` gives the first (where `/peer`, `/health`,
`/peers` and `/events` live), `mcp_url` the last.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from federation.const import MCP_PATH

__all__ = ["address_of", "base_url", "http_url", "mcp_url"]


def base_url(url: str) -> str:
    """The peer's root URL, without a trailing slash or MCP path."""
    trimmed = url.rstrip("/")
    if trimmed.endswith(MCP_PATH):
        trimmed = trimmed[: -len(MCP_PATH)]
    return trimmed.rstrip("/")


def mcp_url(url: str) -> str:
    return base_url(url) + MCP_PATH


def http_url(host: str, port: int, path: str = "") -> str:
    """`http://host:port/path`, bracketing IPv6 literals."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def address_of(url: str) -> str:
    """`host:port` of a URL, for tables."""
    return urlsplit(url).netloc
