"""The name rule: every name the mesh makes is ≤ 48 characters of [A-Za-z0-9_-] (Gemini CLI's `mcp_<server>_` prefix
then fits its 63), different inputs get different names, and the names do not depend on the order peers arrive in."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.node import Node
from federation.routing import namespaced
from federation.routing.catalog import NAME_LIMIT
from federation.toolhost import HostedServer
from servers.echo import build_server as echo_server
from tests.support.waiting import wait_until

GEMINI_LIMIT = 63
ALLOWED = re.compile(r"[A-Za-z0-9_-]+")
ALPHABET = string.ascii_letters + string.digits + "_-"

_PREFIXES = ["", "peer-", "long-peer-name-" * 3, "a__", "x_", "_", "tool" * 12, "search_notes"]
PEER = st.builds(str.__add__, st.sampled_from(_PREFIXES), st.one_of(st.text(ALPHABET, max_size=40), st.text(max_size=20)))
"""Peer labels: plain, at and over the limit, sharing long prefixes, with `__`, trailing `_` and foreign characters."""
TOOL = st.builds(
    str.__add__,
    st.sampled_from(_PREFIXES),
    st.one_of(st.text(ALPHABET, max_size=60), st.text(max_size=30), st.sampled_from(["_0123456789", "-abcdefabcd", "__x"])),
)
"""Tool (prompt, resource) names: the same hard cases, plus ones that end like a hash tag."""


@given(peers=st.lists(PEER, min_size=40, max_size=40, unique=True), tools=st.lists(TOOL, min_size=25, max_size=25, unique=True))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.large_base_example, HealthCheck.too_slow])
def test_a_thousand_synthetic_names_are_distinct_short_and_allowed(peers: list[str], tools: list[str]) -> None:
    """40 peers × 25 tools: every peer offers every tool, the hardest case for shared prefixes."""
    pairs = [(peer, tool) for peer in peers for tool in tools]
    assert len(pairs) == 1000
    names = [namespaced(peer, tool) for peer, tool in pairs]
    assert len(set(names)) == len(names), "two different (peer, tool) pairs got the same name"
    assert max(map(len, names)) <= NAME_LIMIT == 48
    assert all(ALLOWED.fullmatch(name) for name in names)
    assert all(len(f"mcp_mcpfed_{name}") <= GEMINI_LIMIT for name in names)


@given(peer=PEER, tool=TOOL)
def test_a_name_is_the_same_every_time_and_plain_when_it_can_be(peer: str, tool: str) -> None:
    name = namespaced(peer, tool)
    assert name == namespaced(peer, tool)
    readable = ALLOWED.fullmatch(peer) and "__" not in peer and not peer.startswith("_") and not peer.endswith("_") and ALLOWED.fullmatch(tool)
    fits = len(peer) + 2 + len(tool) <= NAME_LIMIT and not re.search(r"[-_][0-9a-f]{10}$", tool)
    if readable and fits:
        assert name == f"{peer}__{tool}"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a", "b__c"), ("a__b", "c")),  # where `__` splits
        (("a_", "b"), ("a", "_b")),  # a peer part ending in `_`
        (("a.b", "x"), ("a_b", "x")),  # a replaced character
        (("alice", "t_0123456789"), ("alice", "t")),  # a tool that looks tagged
    ],
)
def test_names_that_would_read_alike_stay_apart(first: tuple[str, str], second: tuple[str, str]) -> None:
    assert namespaced(*first) != namespaced(*second)


def test_a_salt_gives_another_name_for_the_same_tool() -> None:
    """What `Catalog.publish` does for the second of two tools whose names collide."""
    plain = namespaced("alice", "search")
    assert plain == "alice__search"
    salted = namespaced("alice", "search", salt="asabxundq32vfujh")
    assert salted != plain and salted.startswith("alice__search_") and len(salted) <= NAME_LIMIT


@pytest.mark.anyio
async def test_peers_that_share_a_name_get_the_same_names_whatever_order_they_arrive_in(
    start_node: Callable[..., AbstractAsyncContextManager[Node]], tmp_path: Path
) -> None:
    async with (
        start_node(name="twin", home=tmp_path / "twin1") as first_twin,
        start_node(name="twin", home=tmp_path / "twin2") as second_twin,
        start_node(name="left") as left,
        start_node(name="right") as right,
    ):
        for twin in (first_twin, second_twin):
            await twin.tools.add_provider(HostedServer(echo_server()))
        for observer, order in ((left, (first_twin, second_twin)), (right, (second_twin, first_twin))):
            for twin in order:
                await observer.add_peer(twin.mcp_url)

        def remote_names(node: Node) -> set[str]:
            return {t.name for t in node.tools.tools if t.name.endswith("__echo")}

        expected = {f"twin-{first_twin.peer_id[:6]}__echo", f"twin-{second_twin.peer_id[:6]}__echo"}
        await wait_until(lambda: remote_names(left) == expected and remote_names(right) == expected, "both observers name both twins' echo")
