"""A peer's addresses: users and TXT records give a base or an MCP URL; code needs both.

`http://10.0.0.5:8801`, `http://10.0.0.5:8801/` and `http://10.0.0.5:8801/mcp`
all name the same peer; `base_url` gives the first (where `/peer`, `/health`,
`/peers` and `/events` live), `mcp_url` the last. `user_url` completes what people type: `127.0.0.1:8801`
is `http://127.0.0.1:8801/mcp`.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import quote, urlsplit

from federation.const import MCP_PATH

__all__ = ["address_of", "base_url", "http_url", "mcp_url", "note_uri", "serves_at", "user_url"]


def base_url(url: str) -> str:
    """The peer's root URL, without a trailing slash or MCP path."""
    trimmed = url.rstrip("/")
    if trimmed.endswith(MCP_PATH):
        trimmed = trimmed[: -len(MCP_PATH)]
    return trimmed.rstrip("/")


def mcp_url(url: str) -> str:
    return base_url(url) + MCP_PATH


def user_url(text: str) -> str:
    """A peer URL as typed, made whole where that is unambiguous.

    No scheme means `http://` (`127.0.0.1:8801`); no path means the peer's MCP
    endpoint (`http://host:8801` → `http://host:8801/mcp`). Any other path is
    kept: a relay's `/p/<id>/mcp` is one.
    """
    text = text.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.path in ("", "/"):
        return parts._replace(path=MCP_PATH).geturl()
    return text


def http_url(host: str, port: int, path: str = "", *, scheme: str = "http") -> str:
    """`http://host:port/path` (or `https://` for a TLS server), bracketing IPv6 literals."""
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}{path}"


def address_of(url: str) -> str:
    """`host:port` of a URL, for tables."""
    return urlsplit(url).netloc


def serves_at(endpoint: str, url: str) -> bool:
    """`endpoint` (a signed card's) names `url`: same port and path, same host or an unspecified bind address."""
    signed, wanted = urlsplit(endpoint), urlsplit(url)
    if (signed.port, base_url(signed.path)) != (wanted.port, base_url(wanted.path)):
        return False
    if signed.hostname == wanted.hostname:
        return True
    try:
        return bool(signed.hostname) and ipaddress.ip_address(signed.hostname or "").is_unspecified
    except ValueError:
        return False


def note_uri(peer_name: str, path: str) -> str:
    """`ai://<peer>/<path>`: a peer's note (by its path in the notes folder) as the whole mesh names it."""
    return f"ai://{quote(peer_name, safe='')}/{quote(path, safe='/')}"
