"""Per-caller rate limits on /mcp, against real peers: 429 with Retry-After past the limit, other callers untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client

from federation.const import PEERS_PATH
from federation.discovery.relay import relayed_url
from federation.node import Node
from federation.ratelimit import RATE_LIMITED_CODE
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from tests.support.mesh import introduce
from tests.support.relay import AUTH, MESH_FIELDS, wait_attached
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

BURST = 3
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
NOTES = Path(__file__).resolve().parents[2] / "examples" / "notes"


def _from(address: str, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """A client whose connections come from `address` (any 127.x.y.z works on Linux loopback)."""
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), headers=MCP_HEADERS | (headers or {}))


async def _spend_burst(http: httpx.AsyncClient, url: str) -> httpx.Response:
    """Send BURST requests (all let through), then one more: the limit's answer."""
    for _ in range(BURST):
        assert (await http.post(url, json=PING)).status_code != 429
    return await http.post(url, json=PING)


def _assert_limited(response: httpx.Response, caller: str) -> None:
    assert response.status_code == 429, response.text[:200]
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["code"] == RATE_LIMITED_CODE and error["data"]["caller"] == caller
    assert error["data"]["retry_after_s"] > 0 and "retry in" in error["message"] and "--rate-limit" in error["message"]


@pytest.fixture
async def limited_peer(make_settings: Callable[..., PeerSettings]) -> AsyncIterator[Node]:
    """A peer whose callers get BURST requests, then one an hour: the 429 comes at a known request, on any machine."""
    async with Node(make_settings(rate_limit="1/h", rate_burst=BURST)) as node:
        yield node


async def test_a_caller_past_its_burst_gets_429_saying_when_to_retry(limited_peer: Node) -> None:
    async with _from("127.0.0.1") as http:
        _assert_limited(await _spend_burst(http, limited_peer.mcp_url), "127.0.0.1")
        assert (await http.get(limited_peer.url + PEERS_PATH)).status_code == 200  # only /mcp is limited


async def test_another_caller_is_served_while_one_is_limited(limited_peer: Node) -> None:
    async with _from("127.0.0.1") as first, _from("127.0.0.2") as second:
        _assert_limited(await _spend_burst(first, limited_peer.mcp_url), "127.0.0.1")
        assert (await second.post(limited_peer.mcp_url, json=PING)).status_code != 429


async def test_callers_through_a_relay_are_told_apart_by_the_address_the_relay_saw(
    make_settings: Callable[..., PeerSettings], tmp_path: Path
) -> None:
    async with (
        Relay(RelaySettings(port=0, home=tmp_path / "relay", **MESH_FIELDS)) as relay,
        Node(make_settings(rate_limit="1/h", rate_burst=BURST, relays=[relay.url], **MESH_FIELDS)) as node,
    ):
        await wait_attached(relay.url, node.peer_id)
        url = relayed_url(relay.url, node.peer_id)
        async with _from("127.0.0.1", AUTH) as first, _from("127.0.0.2", AUTH) as second:
            _assert_limited(await _spend_burst(first, url), "127.0.0.1 (via relay)")
            assert (await second.post(url, json=PING)).status_code != 429


async def test_a_burst_forwarded_inside_the_mesh_stays_under_the_default_limit(make_settings: Callable[..., PeerSettings]) -> None:
    """Concurrent calls through a hop at the defaults: the hop is one caller at the peer behind it, and is not refused.

    (`tests/federation/test_hop_load.py` sends 1,000 at the defaults, between two processes.)
    """
    calls = 300
    async with Node(make_settings(name="srv", notes=NOTES)) as srv, Node(make_settings(name="front")) as front:
        await introduce(front, srv)
        await wait_until(lambda: any(t.name.endswith("__search_notes") for t in front.tools.tools), "srv's tools offered by front")
        tool = next(t.name for t in front.tools.tools if t.name.endswith("__search_notes"))
        refused: list[str] = []
        async with Client(front.mcp_url) as client:

            async def one() -> None:
                result = await client.call_tool(tool, {"query": "relay"})
                if result.is_error:
                    refused.append(str(result.content[0]))

            async with anyio.create_task_group() as group:
                for _ in range(calls):
                    group.start_soon(one)
    assert not refused, f"{len(refused)} of {calls} refused; first: {refused[0]}"


async def test_peers_sharing_one_address_are_counted_by_the_peer_their_token_proves(make_settings: Callable[..., PeerSettings]) -> None:
    """Two members behind one address (a NAT, one host) each get a bucket; a stock client with the raw secret counts by address."""
    from federation.proof import MeshKeys

    async with Node(make_settings(rate_limit="1/h", rate_burst=BURST, **MESH_FIELDS)) as node:
        keys = MeshKeys(MESH_FIELDS["mesh_secret"])
        first, second = ("a" * 16, "b" * 16)  # peer ids are 16 base32 letters
        token_of = {peer: {"Authorization": f"Bearer {keys.token(peer, node.peer_id)}"} for peer in (first, second)}
        async with _from("127.0.0.1", token_of[first]) as one, _from("127.0.0.1", token_of[second]) as other, _from("127.0.0.1", AUTH) as stock:
            _assert_limited(await _spend_burst(one, node.mcp_url), f"peer {first}")
            assert (await other.post(node.mcp_url, json=PING)).status_code != 429
            _assert_limited(await _spend_burst(stock, node.mcp_url), "127.0.0.1")
