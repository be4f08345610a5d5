"""`namespaced`: every remote tool gets a name an MCP client accepts, and different tools get different names."""

from __future__ import annotations

import re
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from federation.routing import namespaced

MCP_NAME = re.compile(r"[A-Za-z0-9_-]{1,48}")
PEER_NAME = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=48)
"""Peer labels as the router builds them from peer names: letters, digits and dashes (a clash adds `-<id prefix>`)."""
TOOL_NAME = st.text(min_size=0, max_size=120)
"""Any tool name a peer may list, including empty, over-long, non-ASCII and ones with forbidden characters."""


@given(peer=st.text(max_size=120), tool=TOOL_NAME)
def test_any_peer_and_tool_give_a_valid_mcp_tool_name(peer: str, tool: str) -> None:
    assert MCP_NAME.fullmatch(namespaced(peer, tool))


@given(pairs=st.lists(st.tuples(PEER_NAME, TOOL_NAME), min_size=2, max_size=50, unique=True))
@settings(max_examples=200, deadline=None)
def test_different_tools_get_different_names(pairs: list[tuple[str, str]]) -> None:
    names = [namespaced(peer, tool) for peer, tool in pairs]
    assert len(set(names)) == len(names), sorted(zip(names, pairs, strict=True))


def synthetic_tools() -> list[tuple[str, str]]:
    """1,000 (peer, tool) pairs built to be hard: shared long prefixes, forbidden characters, names at and over the limit."""
    peers = [f"peer-{i}" for i in range(40)] + [f"{'long-peer-name-' * 3}{i}" for i in range(40)] + [f"p{i}-{'x' * 40}" for i in range(20)]
    tools = ["search", "search_notes", f"{'t' * 56}", f"{'t' * 57}", "read file", "read/file", "read.file", "überall", f"{'u' * 80}a", f"{'u' * 80}b"]
    return [(peer, tool) for peer in peers for tool in tools]


def test_a_thousand_synthetic_tools_get_a_thousand_valid_names() -> None:
    pairs = synthetic_tools()
    names = {namespaced(peer, tool) for peer, tool in pairs}
    assert len(pairs) == len(names) == 1000
    assert all(MCP_NAME.fullmatch(name) for name in names)
