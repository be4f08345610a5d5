"""mcp-federation: MCP peers that find each other and share work.

The public API is what this module exports; everything else is internal.

```python
from federation import Mesh
async with Mesh.connect() as mesh:
    answer = await mesh.ask("Explain mDNS in one line")
```
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from federation.api import Answer, Mesh, SyncMesh, ToolResult
    from federation.card import PeerCard, verify_card
    from federation.errors import (
        CardError,
        ConfigError,
        FederationError,
        ModelFileError,
        PeerError,
        PortInUseError,
        ToolCallError,
    )
    from federation.node import Node
    from federation.settings import PeerSettings
    from federation.workflows import PipelineStep, WorkflowResult, debate, map_reduce, pipeline

# Lazy, like Textual's widget index: `mcpfed --help` or `from federation.errors import …`
# must not pay for importing the MCP SDK, uvicorn and SQLAlchemy (seconds on a busy machine).
_HOMES = {
    "Answer": "api",
    "Mesh": "api",
    "SyncMesh": "api",
    "ToolResult": "api",
    "PeerCard": "card",
    "verify_card": "card",
    "CardError": "errors",
    "ConfigError": "errors",
    "FederationError": "errors",
    "ModelFileError": "errors",
    "PeerError": "errors",
    "PortInUseError": "errors",
    "ToolCallError": "errors",
    "Node": "node",
    "PeerSettings": "settings",
    "PipelineStep": "workflows",
    "WorkflowResult": "workflows",
    "debate": "workflows",
    "map_reduce": "workflows",
    "pipeline": "workflows",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'federation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"federation.{_HOMES[name]}"), name)


__all__ = [
    "Answer",
    "CardError",
    "ConfigError",
    "FederationError",
    "Mesh",
    "ModelFileError",
    "Node",
    "PeerCard",
    "PeerError",
    "PeerSettings",
    "PipelineStep",
    "PortInUseError",
    "SyncMesh",
    "ToolCallError",
    "ToolResult",
    "WorkflowResult",
    "debate",
    "map_reduce",
    "pipeline",
    "verify_card",
]
