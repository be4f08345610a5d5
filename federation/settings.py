"""A peer's settings: flags on the CLI, `MCPFED_*` environment variables, or code.

`PeerSettings(port=0)` in a test, `MCPFED_PORT=9000 mcpfed serve` in a shell,
and `mcpfed serve --port 9000` all end up here, validated once.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from federation.const import DEFAULT_CONTEXT, DEFAULT_HOST, DEFAULT_PORT, MAX_REQUEST_BYTES
from federation.home import state_path
from federation.membership import load_mesh, normalize_relay_url

__all__ = ["MeshSettings", "PeerSettings", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MeshSettings(BaseSettings):
    """What peers and relays share: the state dir, the mesh they serve, where they listen.

    The mesh fields come from the stored mesh (`mcpfed init`/`join`) unless
    flags, environment or code give them.
    """

    host: str = DEFAULT_HOST
    home: Path | None = Field(default=None, description="state directory (key, database, mesh); MCPFED_HOME")
    db: str | None = Field(default=None, description="SQLAlchemy URL of the store; SQLite in home by default")
    mesh: str | None = Field(default=None, description="mesh id (carried in the card); from the stored mesh by default")
    mesh_name: str | None = None
    mesh_secret: str | None = Field(default=None, repr=False)
    max_request_bytes: int = Field(default=MAX_REQUEST_BYTES, ge=1024)

    @model_validator(mode="after")
    def _stored_mesh(self) -> MeshSettings:
        stored = load_mesh(state_path(self.home))
        if stored is None:
            return self
        values = {"mesh": stored.id, "mesh_name": stored.name, "mesh_secret": stored.secret, "relays": stored.relays}
        for field, value in values.items():
            if field in type(self).model_fields and field not in self.model_fields_set:
                setattr(self, field, value)
        return self

    def bind_problem(self) -> str | None:
        """Why binding `host` is refused, or None when it is allowed."""
        if is_loopback(self.host) or self.mesh_secret:
            return None
        return (
            f"binding {self.host} exposes this to the network, which needs a mesh secret: "
            "create one with `mcpfed init` (or `mcpfed join TOKEN`), or bind 127.0.0.1."
        )


class PeerSettings(MeshSettings):
    """Everything `mcpfed serve` can be told."""

    model_config = SettingsConfigDict(env_prefix="MCPFED_", extra="forbid")

    name: str | None = Field(default=None, description="display name; defaults to the host name")
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    model: str | None = Field(default="default", description="GGUF path, 'default' (embedded Gemma), or None for no model")
    n_ctx: int = Field(default=DEFAULT_CONTEXT, ge=256)
    gpu_layers: int | None = Field(default=None, ge=-1, description="None = all layers when the build supports GPU offload")
    threads: int | None = Field(default=None, ge=1)
    relays: list[str] = Field(default_factory=list, description="relay base URLs to attach to; the stored mesh's by default")

    @field_validator("model")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("relays")
    @classmethod
    def _relay_urls(cls, value: list[str]) -> list[str]:
        return [normalize_relay_url(url) for url in value]

    def bind_problem(self) -> str | None:
        """Also refuse attaching to a relay off this machine without a mesh secret."""
        remote = [url for url in self.relays if not is_loopback(urlsplit(url).hostname or "")]
        if remote and not self.mesh_secret:
            return (
                f"attaching to relay {remote[0]} exposes this peer to whoever reaches the relay, which needs a mesh secret: "
                "create one with `mcpfed init` (or `mcpfed join TOKEN`)."
            )
        return super().bind_problem()
