"""mcp-federation: MCP peers that find each other and share work.

The public API is what this module exports (`__all__`, pinned by
tests/test_public_api.py); everything else is internal. `tui/`, `examples/`
and `bench/` use only these names.

```python
from federation import Mesh
async with Mesh.connect() as mesh:
    answer = await mesh.ask("Explain mDNS in one line")
```
"""

# No other public name may live here (imports are private), so `__all__` is all there is; tests/test_public_api.py checks.
import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from federation.api import Answer, Mesh, SyncMesh, ToolResult
    from federation.card import PeerCard, card_markdown, verify_card
    from federation.client import call_tool, connect, result_text
    from federation.const import ANSWER_RESTARTS_PREFIX, CARD_PATH, EVENTS_PATH, HEALTH_PATH, MCP_PATH, PEERS_PATH, TRACE_META_KEY
    from federation.contract import (
        CallEvent,
        CallFinished,
        CallStarted,
        Dropped,
        Hello,
        PeerChanged,
        PeerDown,
        PeerEvent,
        PeerRow,
        PeerSuspect,
        PeerUp,
        parse_event,
    )
    from federation.errors import (
        CardError,
        ConfigError,
        FederationError,
        ModelFileError,
        PeerError,
        PortInUseError,
        PullError,
        ToolCallError,
    )
    from federation.home import state_dir
    from federation.membership import auth_headers
    from federation.node import Node
    from federation.settings import PeerSettings
    from federation.workflows import PipelineStep, WorkflowResult, WorkflowStep, debate, map_reduce, pipeline

# Lazy, like Textual's widget index: `mcpfed --help` or `from federation.errors import …`
# must not pay for importing the MCP SDK, uvicorn and SQLAlchemy (seconds on a busy machine).
_HOMES = {
    "Answer": "api",
    "Mesh": "api",
    "SyncMesh": "api",
    "ToolResult": "api",
    "PeerCard": "card",
    "card_markdown": "card",
    "verify_card": "card",
    "call_tool": "client",
    "connect": "client",
    "result_text": "client",
    "ANSWER_RESTARTS_PREFIX": "const",
    "CARD_PATH": "const",
    "EVENTS_PATH": "const",
    "HEALTH_PATH": "const",
    "MCP_PATH": "const",
    "PEERS_PATH": "const",
    "TRACE_META_KEY": "const",
    "CallEvent": "contract",
    "CallFinished": "contract",
    "CallStarted": "contract",
    "Dropped": "contract",
    "Hello": "contract",
    "PeerChanged": "contract",
    "PeerDown": "contract",
    "PeerEvent": "contract",
    "PeerRow": "contract",
    "PeerSuspect": "contract",
    "PeerUp": "contract",
    "parse_event": "contract",
    "CardError": "errors",
    "ConfigError": "errors",
    "FederationError": "errors",
    "ModelFileError": "errors",
    "PeerError": "errors",
    "PortInUseError": "errors",
    "PullError": "errors",
    "ToolCallError": "errors",
    "state_dir": "home",
    "auth_headers": "membership",
    "Node": "node",
    "PeerSettings": "settings",
    "PipelineStep": "workflows",
    "WorkflowResult": "workflows",
    "WorkflowStep": "workflows",
    "debate": "workflows",
    "map_reduce": "workflows",
    "pipeline": "workflows",
}


def __getattr__(name: str) -> _typing.Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'federation' has no attribute {name!r}")
    return getattr(_importlib.import_module(f"federation.{_HOMES[name]}"), name)


__all__ = [
    "ANSWER_RESTARTS_PREFIX",
    "Answer",
    "CARD_PATH",
    "CallEvent",
    "CallFinished",
    "CallStarted",
    "CardError",
    "ConfigError",
    "Dropped",
    "EVENTS_PATH",
    "FederationError",
    "HEALTH_PATH",
    "Hello",
    "MCP_PATH",
    "Mesh",
    "ModelFileError",
    "Node",
    "PEERS_PATH",
    "PeerCard",
    "PeerChanged",
    "PeerDown",
    "PeerError",
    "PeerEvent",
    "PeerRow",
    "PeerSettings",
    "PeerSuspect",
    "PeerUp",
    "PipelineStep",
    "PortInUseError",
    "PullError",
    "SyncMesh",
    "TRACE_META_KEY",
    "ToolCallError",
    "ToolResult",
    "WorkflowResult",
    "WorkflowStep",
    "auth_headers",
    "call_tool",
    "card_markdown",
    "connect",
    "debate",
    "map_reduce",
    "parse_event",
    "pipeline",
    "result_text",
    "state_dir",
    "verify_card",
]
