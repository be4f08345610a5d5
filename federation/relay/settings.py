"""A relay's settings: `mcpfed relay` flags, `MCPFED_RELAY_*` environment variables, or code."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from federation.connections import ConnectionLimits, open_file_limit
from federation.const import DEFAULT_RELAY_PORT, MAX_CONNECTIONS_PER_ADDRESS, RELAY_OPEN_FILES_PER_ADDRESS
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
    max_connections_per_address: int | None = Field(  # type: ignore[assignment]  # None: a relay's own default, worked out at start
        default=None, ge=0, description="open connections one client address may hold; 0 = no cap; None = half the open files the relay may hold"
    )

    def connection_limits(self) -> ConnectionLimits:
        """As a peer's, but by default one address may hold half the relay's open files (see federation.const)."""
        cap = self.max_connections_per_address
        if cap is None:
            cap = max(MAX_CONNECTIONS_PER_ADDRESS, int(open_file_limit() * RELAY_OPEN_FILES_PER_ADDRESS))
        return ConnectionLimits(header_timeout=self.header_timeout, max_per_address=cap)

    def resolved_public_url(self, port: int) -> str:
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{port}"
