"""The one exception tree users of `federation` catch.

    FederationError
    ├── ConfigError          bad flag, file or environment (what to change is in the message)
    │   └── ModelFileError   model path missing, a directory, not GGUF, truncated
    ├── PortInUseError       the port to bind is taken
    ├── CardError            a peer card failed verification (signature, id, mesh)
    ├── PeerError            a peer could not be reached or refused a call
    │   └── ToolCallError    a tool call came back as an error
    └── PullError            `mcpfed pull` could not get a model (nobody holds it, every holder failed, disk full)

Third-party exceptions (httpx, sqlalchemy, zeroconf, llama.cpp) are translated
into these at the boundary and never reach users of the public API.
"""

from __future__ import annotations

__all__ = [
    "CardError",
    "ConfigError",
    "FederationError",
    "ModelFileError",
    "PeerError",
    "PortInUseError",
    "PullError",
    "ToolCallError",
]


class FederationError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(FederationError):
    """A flag, file or environment value is wrong; the message says what to change."""


class ModelFileError(ConfigError):
    """The model file cannot be used (missing, a directory, not GGUF, truncated)."""


class PortInUseError(FederationError):
    """The address to listen on is already taken."""


class CardError(FederationError):
    """A peer card failed verification."""


class PeerError(FederationError):
    """A peer could not be reached or refused the request."""


class ToolCallError(PeerError):
    """A tool call returned an error result."""


class PullError(FederationError):
    """A model could not be pulled from the mesh; the message says why and what is kept for a retry."""
