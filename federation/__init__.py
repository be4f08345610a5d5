"""mcp-federation: MCP peers that find each other and share work.

The public API is what this module exports; everything else is internal.

```python
from federation import Mesh
async with Mesh.connect() as mesh:
    answer = await mesh.ask("Explain mDNS in one line")
```
"""

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
