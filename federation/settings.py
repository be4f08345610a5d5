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

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from federation.const import DEFAULT_CONTEXT, DEFAULT_HOST, DEFAULT_PORT, HEALTH_INTERVAL_SECONDS, MAX_REQUEST_BYTES
from federation.errors import ConfigError

__all__ = ["PeerSettings", "is_loopback", "parse_share"]

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

    def bind_problem(self) -> str | None:
        """Why binding `host` is refused, or None when it is allowed."""
        if is_loopback(self.host) or self.mesh_secret:
            return None
        return (
            f"binding {self.host} exposes this peer to the network, which needs a mesh secret: "
            "create one with `mcpfed init` (or `mcpfed join TOKEN`), or bind 127.0.0.1."
        )
