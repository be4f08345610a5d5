"""The forwarder keeps the same books whichever transport carries a call: SDK session (legacy client) or message level (modern client)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import pytest
from mcp import Client

from federation.client import result_text
from federation.node import Node
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

NOTES = Path(__file__).resolve().parents[3] / "examples" / "notes"
StartNode = Callable[..., AbstractAsyncContextManager[Node]]


@pytest.fixture
async def front_of_a_stopped_peer(start_node: StartNode) -> AsyncIterator[tuple[Node, str]]:
    """`front`, which learned the tools of `srv`, which then stopped (no goodbye: it was named, not found on mDNS)."""
    async with start_node(name="front", health_interval=60) as front:  # no health ping between the calls below
        async with start_node(name="srv", notes=NOTES) as srv:
            await front.add_peer(srv.mcp_url)
            await wait_until(lambda: any(t.name == "srv__search_notes" for t in front.tools.tools))
            srv_id = srv.peer_id
        yield front, srv_id


async def test_a_peer_that_stopped_answering_gets_one_error_text_and_one_liveness_miss_per_call_on_both_transports(
    front_of_a_stopped_peer: tuple[Node, str],
) -> None:
    front, srv_id = front_of_a_stopped_peer
    texts: dict[str, str] = {}
    for mode in ("legacy", "auto"):  # the SDK session, then the message-level fast path
        with anyio.fail_after(30):  # a liveness bound: a failed connection must not wait out the caller's deadline
            async with Client(front.mcp_url, mode=mode) as client:  # type: ignore[arg-type]
                result = await client.call_tool("srv__search_notes", {"query": "mesh"})
        assert result.is_error, mode
        texts[mode] = result_text(result)
    prefix = f"peer srv ({srv_id}) is unreachable (last seen "
    assert all(text.startswith(prefix) for text in texts.values()), texts
    peer = front.peers.get(srv_id)
    assert peer is not None and peer.misses >= 2 and peer.status != "up", "each failed call is a liveness miss"
    assert front.forwarder.outstanding[srv_id] == 0


async def test_a_peer_that_refuses_a_call_over_the_session_stays_up_and_the_caller_is_told_why(start_node: StartNode) -> None:
    """A JSON-RPC error the peer itself answers (here its rate limit) is its refusal, not a sign it is gone."""
    async with start_node(name="front", health_interval=60) as front, start_node(name="srv", notes=NOTES, rate_limit="1/h", rate_burst=40) as srv:
        await front.add_peer(srv.mcp_url)
        await wait_until(lambda: any(t.name == "srv__search_notes" for t in front.tools.tools))
        async with Client(front.mcp_url, mode="legacy") as client:  # the SDK session transport
            with anyio.fail_after(60):
                while not (result := await client.call_tool("srv__search_notes", {"query": "mesh"})).is_error:
                    pass  # each call spends one of srv's 40 requests for front's address
        peer = front.peers.get(srv.peer_id)
        assert peer is not None and peer.status == "up" and peer.misses == 0, "a refusal is no liveness miss"
    text = result_text(result)
    assert text.startswith(f"peer srv ({srv.peer_id}) refused search_notes: 429"), text
