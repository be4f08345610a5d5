"""A peer's settings: flags on the CLI, `MCPFED_*` environment variables, or code.

`PeerSettings(port=0)` in a test, `MCPFED_PORT=9000 mcpfed serve` in a shell,
and `mcpfed serve --port 9000` all end up here, validated once.

Every flag of `mcpfed serve` is also the variable `MCPFED_<FLAG>` (`--ctx` is
`MCPFED_CTX`, `--gpu-layers` is `MCPFED_GPU_LAYERS`); `mcpfed relay`'s are
`MCPFED_RELAY_<FLAG>`. A repeatable flag's variable holds one value or a JSON
list (`MCPFED_PEER='["http://a:8801", "http://b:8801"]'`): a share command
may hold commas and spaces, so neither can separate values. Empty means unset.
Settings without a flag keep their field name (`MCPFED_MESH_SECRET`). Flags
beat the environment, which beats the defaults. A bad value, from wherever it
came, is a `ConfigError` naming the setting, never a pydantic traceback.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any, ClassVar, get_origin
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from federation.connections import ConnectionLimits
from federation.const import (
    CHUNK_BYTES,
    DEFAULT_CONTEXT,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_RATE_LIMIT,
    HEADER_TIMEOUT_SECONDS,
    HEALTH_INTERVAL_SECONDS,
    MAX_CHUNK_BYTES,
    MAX_CONNECTIONS_PER_ADDRESS,
    MAX_REQUEST_BYTES,
)
from federation.errors import ConfigError
from federation.home import state_path
from federation.membership import load_mesh, normalize_relay_url
from federation.ratelimit import Rate
from servers.fair_queue import DEFAULT_QUEUE_LIMIT

__all__ = ["MeshSettings", "PeerSettings", "is_loopback", "parse_allow", "parse_share"]

_SHARE_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
_HOST_NAME = re.compile(r"\*|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


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


def parse_allow(spec: str, shares: list[str]) -> tuple[str, list[str]]:
    """`NAME:TOOL,TOOL` (or `TOOL,TOOL` when one server is shared) as (share name, tools), or ConfigError saying how to write it.

    Naming the share makes `--allow` independent of flag order and of how the
    environment lists it; the short form is there for the common single share.
    """
    name, sep, tools = spec.partition(":")
    if not sep or not _SHARE_NAME.fullmatch(name.strip()):
        if len(shares) != 1:
            given = "no --share is given" if not shares else f"several are shared ({', '.join(shares)})"
            raise ConfigError(f"--allow {spec!r} must name its share as NAME:TOOL,TOOL, since {given}; e.g. --allow fs:read_file,list_directory.")
        name, tools = shares[0], spec
    name = name.strip()
    if name not in shares:
        raise ConfigError(f"--allow {spec!r} names {name!r}, which no --share gives; the shares are: {', '.join(shares) or '(none)'}.")
    names = [tool.strip() for tool in tools.split(",") if tool.strip()]
    if not names:
        raise ConfigError(f"--allow {spec!r} names no tools; list the tools to share, e.g. --allow {name}:read_file,list_directory.")
    return name, names


def _env_list(key: str, raw: str) -> list[str]:
    """A repeatable flag's variable: a JSON list of strings, or one value."""
    if not raw.startswith("["):
        return [raw]
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{key} starts with '[' but is not a JSON list ({exc.msg}); give one value, or a list like '[\"a\", \"b\"]'.") from exc
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise ConfigError(f"{key} must be one value or a JSON list of strings, like '[\"a\", \"b\"]'.")
    return values


class _FlagEnvironment(PydanticBaseSettingsSource):
    """`<prefix><FLAG>` variables, named after the CLI flag rather than the field (MCPFED_CTX, not MCPFED_N_CTX).

    Replaces pydantic-settings' own environment source, which names variables
    after fields and reads lists only as JSON (a bare `MCPFED_SHARE=e=cmd` was
    a traceback).
    """

    def __init__(self, settings_cls: type[MeshSettings]) -> None:
        super().__init__(settings_cls)
        self._names = settings_cls
        self._environ = {key.upper(): value for key, value in os.environ.items()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        key = self._names.env_name(field_name)
        raw = self._environ.get(key, "").strip()
        if not raw:
            return None, key, False
        return (_env_list(key, raw) if get_origin(field.annotation) is list else raw), key, False

    def __call__(self) -> dict[str, Any]:
        found = {name: self.get_field_value(field, name)[0] for name, field in self.settings_cls.model_fields.items()}
        return {name: value for name, value in found.items() if value is not None}


class MeshSettings(BaseSettings):
    """What peers and relays share: the state dir, the mesh they serve, where they listen.

    The mesh fields come from the stored mesh (`mcpfed init`/`join`) unless
    flags, environment or code give them.
    """

    model_config = SettingsConfigDict(env_prefix="MCPFED_", extra="forbid")

    flag_names: ClassVar[dict[str, str]] = {"allowed_hosts": "allowed_host"}
    """Fields whose CLI flag (and so environment variable) is spelt differently: field -> flag."""

    host: str = DEFAULT_HOST
    home: Path | None = Field(default=None, description="state directory (key, database, mesh); MCPFED_HOME")
    db: str | None = Field(default=None, description="SQLAlchemy URL of the store; SQLite in home by default")
    mesh: str | None = Field(default=None, description="mesh id (carried in the card); from the stored mesh by default")
    mesh_name: str | None = None
    mesh_secret: str | None = Field(default=None, repr=False)
    max_request_bytes: int = Field(default=MAX_REQUEST_BYTES, ge=1024)
    allowed_hosts: list[str] = Field(default_factory=list, description="extra host names requests may be addressed to ('*': any); see federation.hostguard")
    header_timeout: float = Field(default=HEADER_TIMEOUT_SECONDS, gt=0, le=600, description="seconds a client has to send a request's headers")
    max_connections_per_address: int = Field(
        default=MAX_CONNECTIONS_PER_ADDRESS, ge=0, description="open connections one client address may hold; 0 = no cap"
    )
    public_url: str | None = Field(
        default=None, description="base URL others reach this at (a container's published port, a proxy, a TLS name); advertised first"
    )

    @field_validator("public_url")
    @classmethod
    def _public_url_is_a_base_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return normalize_relay_url(value)
        except ConfigError:
            raise ValueError("give the base URL others reach this at, like https://peer.example.com or http://203.0.113.5:8801") from None

    tls_cert: Path | None = Field(default=None, description="PEM certificate (chain) to serve HTTPS with; needs tls_key")
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")
    ca: Path | None = Field(default=None, description="PEM CA certificate(s) trusted besides the system's, for a mesh with its own CA")
    plain_http: bool = Field(
        default=False, description="serve plain HTTP on a non-loopback host knowingly (behind a TLS-terminating proxy, on a trusted LAN/VPN)"
    )

    @field_validator("tls_cert", "tls_key", "ca")
    @classmethod
    def _pem_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_file():
            raise ValueError("no such file; give the path of a PEM file")
        return value.expanduser() if value is not None else None

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> MeshSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together: give both (the certificate and its private key) or neither.")
        return self

    @property
    def scheme(self) -> str:
        """`https` when serving TLS, else `http`: the scheme of every URL this hands out."""
        return "https" if self.tls_cert else "http"

    def public_name(self) -> list[str]:
        """The host name of `public_url`, which requests may then be addressed to (HostGuard), as a list to splice in."""
        name = urlsplit(self.public_url or "").hostname
        return [name] if name else []

    def __init__(self, **values: Any) -> None:
        """Validate flags, environment and code values alike; a bad one is a ConfigError saying which."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(type(self).explain(exc, given=values)) from exc

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Code and flags first, then `MCPFED_<FLAG>` variables; no .env or secrets files."""
        assert issubclass(settings_cls, MeshSettings)
        return init_settings, _FlagEnvironment(settings_cls)

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable of a field: the prefix and the flag's name, `MCPFED_CTX` for `n_ctx`."""
        return (str(cls.model_config.get("env_prefix", "")) + cls.flag_names.get(field, field)).upper()

    @classmethod
    def explain(cls, exc: ValidationError, given: dict[str, Any]) -> str:
        """One sentence per bad value: which setting, what it was, what is wrong, and where it came from.

        `given` are the values passed in code or by flags; any other came from the environment.
        """
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown setting {field!r}")
                continue
            message = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
            shown = repr(error["input"])
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            name = str(error["loc"][0]) if error["loc"] else ""
            came_from = f" (from {cls.env_name(name)})" if name and name not in given else ""
            problems.append(f"{field}={shown}{came_from} is not allowed: {message[:1].lower()}{message[1:].rstrip('.')}")
        return "; ".join(problems) + "."

    def shown(self) -> dict[str, Any]:
        """The effective settings as JSON-ready values, secrets masked (`--print-settings`)."""
        values = self.model_dump(mode="json")
        for name, field in type(self).model_fields.items():
            if not field.repr and values.get(name):
                values[name] = "***"
        return values

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _HOST_NAME.fullmatch(name.strip()):
                raise ValueError(f"{name!r} is not a host name; give a bare name like peer.example.com (no scheme, port or path), or '*' for any")
        return [name.strip().lower() for name in names]

    def connection_limits(self) -> ConnectionLimits:
        """The header timeout and per-address cap every connection to this server is held to."""
        return ConnectionLimits(header_timeout=self.header_timeout, max_per_address=self.max_connections_per_address)

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
        """Why binding `host` is refused, or None when it is allowed.

        Off loopback the mesh secret is what keeps strangers out, and it travels
        as a bearer header: in plain HTTP anyone on the path reads it. So the
        network needs TLS, or the operator's word (`plain_http`) that something
        else protects the wire.
        """
        if is_loopback(self.host):
            return None
        if not self.mesh_secret:
            return (
                f"binding {self.host} exposes this to the network, which needs a mesh secret: "
                "create one with `mcpfed init` (or `mcpfed join TOKEN`), or bind 127.0.0.1."
            )
        if self.tls_cert or self.plain_http:
            return None
        return (
            f"binding {self.host} would serve plain HTTP to the network: pass --tls-cert/--tls-key, or --plain-http "
            "to accept plain HTTP knowingly (behind a TLS-terminating proxy, on a trusted LAN/VPN), or bind 127.0.0.1."
        )


_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_size(text: str, flag: str) -> int:
    """Bytes of a size people write (`2GB`, `512MiB`, `1.5g`); ConfigError naming `flag` otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS or float(match.group(1)) <= 0:
        raise ConfigError(f"{flag} takes a size such as 512MB or 2GB, not {text!r}.")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


class PeerSettings(MeshSettings):
    """Everything `mcpfed serve` can be told."""

    flag_names: ClassVar[dict[str, str]] = {**MeshSettings.flag_names, "n_ctx": "ctx", "peers": "peer", "relays": "relay"}

    name: str | None = Field(default=None, description="display name; defaults to the host name")
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    model: str | None = Field(default="default", description="GGUF path, an embedded model's name, 'default' (smollm2-135m), or None for no model")
    n_ctx: int = Field(default=DEFAULT_CONTEXT, ge=256)
    gpu_layers: int | None = Field(default=None, ge=-1, description="None = all layers when the build supports GPU offload")
    threads: int | None = Field(default=None, ge=1)
    queue_limit: int = Field(default=DEFAULT_QUEUE_LIMIT, ge=0, le=10_000, description="calls that may wait for the model; more are refused as busy")
    queue_per_caller: int | None = Field(default=None, ge=1, description="calls one caller may have waiting; None = half the queue limit, rounded up")
    relays: list[str] = Field(default_factory=list, description="relay base URLs to attach to; the stored mesh's by default")
    max_hops: int = Field(default=4, ge=0, le=32, description="calls that have passed this many peers are refused")
    notes: Path | None = Field(default=None, description="folder of Markdown notes to offer as search_notes/read_note")
    share: list[str] = Field(default_factory=list, description="stdio MCP servers to offer, each NAME=COMMAND")
    allow: list[str] = Field(default_factory=list, description="tools a share offers, each NAME:TOOL,TOOL; a share without one offers all its tools")
    mdns: str = Field(default="auto", description="'auto' (follow --host), 'off', or a comma list of interfaces/IPv4 addresses")
    peers: list[str] = Field(default_factory=list, description="static peer URLs, for networks where multicast is blocked")
    health_interval: float = Field(default=HEALTH_INTERVAL_SECONDS, gt=0, le=60, description="seconds between health pings")
    rate_limit: str = Field(default=DEFAULT_RATE_LIMIT, description="requests per caller to /mcp, e.g. 20/s, 600/m, or 'off'; see federation.ratelimit")
    rate_burst: int | None = Field(default=None, ge=1, description="requests a caller may send at once; two seconds' worth by default")
    share_models: bool = Field(default=True, description="let mesh members pull the served model and <home>/models/*.gguf (federation.pull)")
    share_rate: float = Field(default=0.0, ge=0, description="MB/s this peer sends model chunks at, all pulls together; 0 = no cap")
    model_chunk_bytes: int = Field(default=CHUNK_BYTES, ge=64 * 1024, le=MAX_CHUNK_BYTES, description="chunk size of the manifests this peer signs")
    lend: bool = Field(default=False, description="lend compute for other peers' split models: a ggml RPC server reached only through the mesh")
    lend_mem: str = Field(default="2GB", description="memory lent with --lend: 512MB, 2GB, ...")
    split: str | None = Field(default=None, description="split --model over lenders: 'auto' (every usable one) or N (the best N); None = no split")

    @field_validator("lend_mem")
    @classmethod
    def _lend_mem_is_a_size(cls, value: str) -> str:
        parse_size(value, "--lend-mem")
        return value.strip()

    def lend_bytes(self) -> int:
        return parse_size(self.lend_mem, "--lend-mem")

    @field_validator("split")
    @classmethod
    def _split_is_auto_or_a_count(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("", "none", "off"):
            return None
        value = value.strip().lower()
        if value != "auto" and not (value.isdigit() and int(value) >= 1):
            raise ConfigError(f"--split takes 'auto' (every usable lender) or a number of lenders (1, 2, ...), not {value!r}.")
        return value

    def split_lenders(self) -> int | None:
        """How many lenders `--split` asks for; None for 'auto' (and for no split: check `split` first)."""
        return None if self.split in (None, "auto") else int(self.split)
    copies: int = Field(default=1, ge=1, le=1000, description="peers to run on this host, forked from one process (federation.fleet)")

    @field_validator("rate_limit")
    @classmethod
    def _rate_is_readable(cls, value: str) -> str:
        Rate.parse(value)
        return value.strip()

    def rate(self) -> Rate | None:
        """The per-caller rate limit on /mcp, None when off."""
        return Rate.parse(self.rate_limit, self.rate_burst)

    @field_validator("model")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        """`--model none` (or MCPFED_MODEL=none) serves no model."""
        return None if not value or value.lower() == "none" else value

    @field_validator("gpu_layers", mode="before")
    @classmethod
    def _auto_is_none(cls, value: object) -> object:
        """`auto` (all layers when the build can offload) is None; anything else must be a whole number."""
        if not isinstance(value, str):
            return value
        if value.strip().lower() == "auto":
            return None
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"--gpu-layers takes 'auto', -1 (all) or a number of layers, not {value!r}.") from None

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

    @field_validator("allow")
    @classmethod
    def _allows_name_shares(cls, value: list[str], info: ValidationInfo) -> list[str]:
        shares = [parse_share(spec)[0] for spec in info.data.get("share", [])]
        for spec in value:
            parse_allow(spec, shares)
        return value

    def allowed_tools(self) -> dict[str, frozenset[str]]:
        """Share name -> the only tools it offers, for shares that have an `--allow` (several add up)."""
        allowed: dict[str, frozenset[str]] = {}
        shares = [name for name, _ in self.shares()]
        for spec in self.allow:
            name, tools = parse_allow(spec, shares)
            allowed[name] = allowed.get(name, frozenset()) | set(tools)
        return allowed

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
