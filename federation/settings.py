"""A peer's settings: flags on the CLI, `MCPFED_*` environment variables, or code.

`PeerSettings(port=0)` in a test, `MCPFED_PORT=9000 mcpfed serve` in a shell,
and `mcpfed serve --port 9000` all end up here, validated once.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from federation.const import DEFAULT_CONTEXT, DEFAULT_HOST, DEFAULT_PORT, HEALTH_INTERVAL_SECONDS, MAX_REQUEST_BYTES
from federation.errors import ConfigError
from federation.home import state_path
from federation.membership import load_mesh, normalize_relay_url

__all__ = ["MeshSettings", "PeerSettings", "is_loopback", "parse_share"]

_SHARE_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_share(spec: str) -> tuple[str, str]:
    """`NAME=COMMAND` as (name, command), or ConfigError saying how to write it."""
    name, sep, command = spec.partition("=")
    name, command = name.strip(), command.strip()
    example = 'e.g. --share fs="npx -y @modelcontextprotocol/server-filesystem ~/docs"'
    if not sep or not command:
        raise ConfigError(f"--share {spec!r} needs the form NAME=COMMAND, {example}.")
    if not _SHARE_NAME.fullmatch(name):
        raise ConfigError(f"--share name {name!r} must be 1-32 letters, digits, '_' or '-', {example}.")
    try:
        shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"--share {name}: cannot split the command {command!r} ({exc}); check its quotes.") from exc
    return name, command


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
    max_hops: int = Field(default=4, ge=0, le=32, description="calls that have passed this many peers are refused")
    notes: Path | None = Field(default=None, description="folder of Markdown notes to offer as search_notes/read_note")
    share: list[str] = Field(default_factory=list, description="stdio MCP servers to offer, each NAME=COMMAND")
    mdns: str = Field(default="auto", description="'auto' (follow --host), 'off', or a comma list of interfaces/IPv4 addresses")
    peers: list[str] = Field(default_factory=list, description="static peer URLs, for networks where multicast is blocked")
    health_interval: float = Field(default=HEALTH_INTERVAL_SECONDS, gt=0, le=60, description="seconds between health pings")

    @field_validator("model")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("notes")
    @classmethod
    def _notes_is_a_folder(cls, value: Path | None) -> Path | None:
        """Raises ConfigError (not a pydantic error) so the CLI prints one clear line."""
        if value is None:
            return None
        value = value.expanduser()
        if not value.is_dir():
            raise ConfigError(f"--notes {value} is not a folder; point it at a folder of Markdown (.md) files.")
        return value

    @field_validator("share")
    @classmethod
    def _shares_are_well_formed(cls, value: list[str]) -> list[str]:
        names = [parse_share(spec)[0] for spec in value]
        if duplicates := sorted({n for n in names if names.count(n) > 1}):
            raise ConfigError(f"--share names must be unique; {', '.join(duplicates)} given more than once.")
        return value

    def shares(self) -> list[tuple[str, str]]:
        """The `share` entries as (name, command) pairs."""
        return [parse_share(spec) for spec in self.share]

    @field_validator("peers")
    @classmethod
    def _peer_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not a peer URL; give one like http://192.168.1.20:8801")
        return urls

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
