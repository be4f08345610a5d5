"""A peer's settings: flags on the CLI, `MCPFED_*` environment variables, or code.

`PeerSettings(port=0)` in a test, `MCPFED_PORT=9000 mcpfed serve` in a shell,
and `mcpfed serve --port 9000` all end up here, validated once.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from federation.const import DEFAULT_CONTEXT, DEFAULT_HOST, DEFAULT_PORT, HEALTH_INTERVAL_SECONDS, MAX_REQUEST_BYTES

__all__ = ["PeerSettings", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PeerSettings(BaseSettings):
    """Everything `mcpfed serve` can be told."""

    model_config = SettingsConfigDict(env_prefix="MCPFED_", extra="forbid")

    name: str | None = Field(default=None, description="display name; defaults to the host name")
    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    model: str | None = Field(default="default", description="GGUF path, 'default' (embedded Gemma), or None for no model")
    n_ctx: int = Field(default=DEFAULT_CONTEXT, ge=256)
    gpu_layers: int | None = Field(default=None, ge=-1, description="None = all layers when the build supports GPU offload")
    threads: int | None = Field(default=None, ge=1)
    home: Path | None = Field(default=None, description="state directory (key, database); MCPFED_HOME")
    db: str | None = Field(default=None, description="SQLAlchemy URL of the store; SQLite in home by default")
    mesh: str | None = None
    mesh_secret: str | None = Field(default=None, repr=False)
    max_request_bytes: int = Field(default=MAX_REQUEST_BYTES, ge=1024)
    mdns: str = Field(default="auto", description="'auto' (follow --host), 'off', or a comma list of interfaces/IPv4 addresses")
    peers: list[str] = Field(default_factory=list, description="static peer URLs, for networks where multicast is blocked")
    health_interval: float = Field(default=HEALTH_INTERVAL_SECONDS, gt=0, le=60, description="seconds between health pings")

    @field_validator("model")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("peers")
    @classmethod
    def _peer_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not a peer URL; give one like http://192.168.1.20:8801")
        return urls

    def bind_problem(self) -> str | None:
        """Why binding `host` is refused, or None when it is allowed."""
        if is_loopback(self.host) or self.mesh_secret:
            return None
        return (
            f"binding {self.host} exposes this peer to the network, which needs a mesh secret: "
            "create one with `mcpfed init` (or `mcpfed join TOKEN`), or bind 127.0.0.1."
        )
