"""Mesh membership: the credential a peer sends to other peers and relays.

(The relay work fleshes this out: `mcpfed init`/`invite`/`join`, the stored
mesh id + secret, and the server-side check that answers 401.)
"""

from __future__ import annotations

from federation.settings import PeerSettings

__all__ = ["auth_headers"]


def auth_headers(settings: PeerSettings) -> dict[str, str]:
    """Headers proving mesh membership on requests to other peers; empty outside a mesh."""
    if not settings.mesh_secret:
        return {}
    return {"Authorization": f"Bearer {settings.mesh_secret}"}
