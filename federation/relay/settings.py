"""A relay's settings: `mcpfed relay` flags, `MCPFED_RELAY_*` environment variables, or code."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from federation.const import DEFAULT_RELAY_PORT, RELAY_MAX_CONNECTIONS_PER_ADDRESS
from federation.settings import MeshSettings

__all__ = ["RelaySettings"]


class RelaySettings(MeshSettings):
    """Where the relay listens and the limits it enforces on each tunnel (named in its errors)."""

    model_config = SettingsConfigDict(env_prefix="MCPFED_RELAY_", extra="forbid")

    port: int = Field(default=DEFAULT_RELAY_PORT, ge=0, le=65535)
    max_streams: int = Field(default=64, ge=1, description="requests in flight per tunnel")
    max_frame_bytes: int = Field(default=1024 * 1024, ge=4096, description="largest tunnel message a peer may send")
    window: int = Field(default=256 * 1024, ge=1024, description="unacknowledged response bytes per stream (flow control)")
    send_timeout: float = Field(default=10.0, gt=0, description="seconds a tunnel may stop reading before the relay drops it")
    max_connections_per_address: int = Field(
        default=RELAY_MAX_CONNECTIONS_PER_ADDRESS, ge=0, description="open connections one client address may hold; 0 = no cap (the default: see federation.const)"
    )

    def resolved_public_url(self, port: int) -> str:
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{port}"
