"""TLS for peers and relays: the certificate a server presents, and the certificates our clients trust.

A peer or relay given `--tls-cert/--tls-key` serves HTTPS (and WSS for
tunnels) and advertises `https://` URLs. Clients verify certificates always:
against the system's CAs, plus every `--ca FILE` this process was given, for a
mesh whose certificates come from its own CA. The trusted set is
process-wide on purpose: a peer's clients are many (discovery, health, the
forwarder's sessions, relay tunnels and directories, the SDK client) and
they all talk to the same mesh, so one `--ca` must reach every one of them.
"""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["client_context", "server_options", "trust", "verify_hint"]

_trusted: set[Path] = set()


def trust(ca: Path) -> None:
    """Trust the CA certificates in `ca` (PEM) for every client of this process from now on."""
    _trusted.add(ca.expanduser().resolve())


def client_context() -> ssl.SSLContext:
    """The verifying context for httpx, httpx2 and websockets: system CAs plus every `trust()`ed file."""
    return _context(frozenset(_trusted))


@lru_cache(maxsize=8)
def _context(cas: frozenset[Path]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for ca in sorted(cas):
        context.load_verify_locations(cafile=str(ca))
    return context


def server_options(cert: Path | None, key: Path | None) -> dict[str, Any]:
    """uvicorn's options to serve HTTPS with `cert` and `key`; none when not given."""
    if cert is None or key is None:
        return {}
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def verify_hint(cause: BaseException) -> str | None:
    """What to do when `cause` is a failed certificate check, else None."""
    seen: BaseException | None = cause
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return (
                "its TLS certificate is not trusted here: pass --ca FILE (or MCPFED_CA) with the CA certificate "
                "that signed it, for a mesh with its own CA"
            )
        seen = seen.__cause__ or seen.__context__
    return None
