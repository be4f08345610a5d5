"""The mDNS TXT record: what a peer advertises about itself, and reading it back.

Five short keys: `id` (peer id), `mesh` (a tag
of the mesh id, so neighbours in other meshes are skipped without a fetch),
`path` (the MCP path), `v` (protocol version) and `cd` (card digest: changes
when the peer's models or tools change, telling others to re-fetch). Anyone
on the LAN can announce anything, so a `Hint` only says where to look: the
card fetched from there is what gets verified and admitted.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo

from federation.card import PeerCard
from federation.const import PROTOCOL_VERSION
from federation.urls import http_url

__all__ = ["Hint", "HintError", "mesh_tag", "parse_hint", "txt_record"]

_PEER_ID = re.compile(r"[a-z2-7]{16}")
_PATH = re.compile(r"/[A-Za-z0-9/_.-]{0,63}")
_VERSION = re.compile(r"[0-9]{1,4}")
_DIGEST = re.compile(r"[0-9a-f]{12}")
_MAX_ADDRESSES = 4


class HintError(ValueError):
    """A TXT record or address set that does not describe a peer (malformed or hostile)."""


def mesh_tag(mesh: str | None) -> str:
    """Eight hex digits naming the mesh without revealing its id; empty for 'no mesh'."""
    return hashlib.sha256(mesh.encode("utf-8")).hexdigest()[:8] if mesh else ""


def txt_record(card: PeerCard, path: str) -> dict[str, str]:
    """The TXT properties advertising `card`."""
    return {"id": card.id, "mesh": mesh_tag(card.mesh), "path": path, "v": card.protocol, "cd": card.digest()}


@dataclass(frozen=True)
class Hint:
    """What an mDNS announcement claims; nothing here is trusted until the card verifies."""

    peer_id: str
    path: str
    version: str
    digest: str
    urls: tuple[str, ...]

    @property
    def compatible(self) -> bool:
        return self.version == PROTOCOL_VERSION


def _text(properties: dict[bytes, bytes | None], key: str, pattern: re.Pattern[str]) -> str:
    raw = properties.get(key.encode("ascii"))
    if raw is None:
        raise HintError(f"TXT record has no {key!r}")
    try:
        value = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise HintError(f"TXT {key!r} is not ASCII") from exc
    if not pattern.fullmatch(value):
        raise HintError(f"TXT {key}={value[:40]!r} is malformed")
    return value


def parse_hint(info: AsyncServiceInfo) -> Hint:
    """Read a resolved instance, or raise `HintError` saying what is wrong with it."""
    properties = info.properties or {}
    peer_id = _text(properties, "id", _PEER_ID)
    path = _text(properties, "path", _PATH)
    port = info.port
    if not port or not 0 < port < 65536:
        raise HintError(f"advertised port {port!r} is not a TCP port")
    addresses = []
    for address in info.parsed_addresses(IPVersion.V4Only)[:_MAX_ADDRESSES]:
        parsed = ipaddress.ip_address(address)
        if parsed.is_multicast or parsed.is_unspecified:
            raise HintError(f"advertised address {address} is not a host address")
        addresses.append(address)
    if not addresses:
        raise HintError("the announcement carries no IPv4 address")
    return Hint(
        peer_id=peer_id,
        path=path,
        version=_text(properties, "v", _VERSION),
        digest=_text(properties, "cd", _DIGEST),
        urls=tuple(http_url(address, port, path) for address in addresses),
    )
