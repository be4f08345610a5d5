"""A peer reached only through a relay, on loopback: stock SDK client, streaming, concurrency, directory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from websockets.exceptions import InvalidStatus

from federation.client import connect
from federation.discovery.relay import relayed_url
from federation.errors import PeerError
from federation.node import Node
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from federation.toolhost import HostedServer
from tests.support.models import BASE_MODEL
from tests.support.relay import AUTH, MESH_FIELDS, free_port, raw_tunnel, wait_attached

pytestmark = pytest.mark.anyio


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    async with Relay(RelaySettings(port=0, home=tmp_path / "relay", **MESH_FIELDS)) as running:
        yield running


@pytest.fixture
async def relayed_model(make_settings: Callable[..., PeerSettings], relay: Relay) -> AsyncIterator[Node]:
    """A model peer whose only public face is the relay."""
    async with Node(make_settings(name="natted", model=BASE_MODEL, n_ctx=2048, relays=[relay.url], **MESH_FIELDS)) as node:
        await node.wait_ready()
        await wait_attached(relay.url, node.peer_id)
        yield node


def stock_client(url: str, http: httpx2.AsyncClient) -> Client:
    return Client(streamable_http_client(url, http_client=http))


@pytest.mark.model
async def test_stock_sdk_client_streams_a_generation_through_the_relay(relay: Relay, relayed_model: Node) -> None:
    assert relayed_model.engine is not None
    engine = relayed_model.engine
    pieces: list[str] = []
    busy_at_first_piece: list[int] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        if not pieces:
            busy_at_first_piece.append(engine.in_flight)
        pieces.append(message or "")

    async with httpx2.AsyncClient(headers=AUTH, timeout=httpx2.Timeout(30, read=120)) as http:
        async with stock_client(relayed_url(relay.url, relayed_model.peer_id), http) as client:
            result = await client.call_tool("generate", {"prompt": "Once upon a time", "max_tokens": 12, "seed": 3}, progress_callback=progress)
    content = result.structured_content
    assert content is not None and not result.is_error
    assert content["usage"]["completion_tokens"] == 12
    assert "".join(pieces) == content["text"]
    assert busy_at_first_piece == [1], "the first token arrived only after generation ended: the relay buffered the stream"


@pytest.mark.model
async def test_twenty_concurrent_calls_share_one_tunnel(relay: Relay, relayed_model: Node) -> None:
    results: dict[int, tuple[str, str]] = {}

    async def one(client: Client, seed: int) -> None:
        pieces: list[str] = []

        async def progress(value: float, total: float | None, message: str | None) -> None:
            pieces.append(message or "")

        result = await client.call_tool("generate", {"prompt": f"Item {seed}:", "max_tokens": 2, "seed": seed}, progress_callback=progress)
        assert result.structured_content is not None
        results[seed] = ("".join(pieces), result.structured_content["text"])

    served_before = relayed_model.calls_served
    async with httpx2.AsyncClient(headers=AUTH, timeout=httpx2.Timeout(30, read=120)) as http:
        async with stock_client(relayed_url(relay.url, relayed_model.peer_id), http) as client:
            with anyio.fail_after(120):
                async with anyio.create_task_group() as group:
                    for seed in range(20):
                        group.start_soon(one, client, seed)
    assert sorted(results) == list(range(20))
    assert all(streamed == final for streamed, final in results.values())
    assert relay.peer_ids == [relayed_model.peer_id]
    assert relayed_model.calls_served - served_before == 20


async def test_peers_learn_each_other_from_the_relay_and_prefer_a_direct_route(
    make_settings: Callable[..., PeerSettings], relay: Relay
) -> None:
    async with Node(make_settings(relays=[relay.url], **MESH_FIELDS)) as first, Node(make_settings(relays=[relay.url], **MESH_FIELDS)) as second:
        with anyio.fail_after(15):
            while second.peer_id not in first.peers or first.peer_id not in second.peers:
                await anyio.sleep(0.05)
        seen = first.peers.get(second.peer_id)
        assert seen is not None
        assert (seen.via, seen.url) == ("relay", relayed_url(relay.url, second.peer_id))
        async with connect(seen.url, headers=AUTH) as client:  # the learned URL works
            await client.list_tools()
        first.peers.admit(seen.card, "mdns", second.mcp_url)
        assert (first.peers.get(second.peer_id).via, first.peers.get(second.peer_id).url) == ("mdns", second.mcp_url)  # type: ignore[union-attr]


async def test_a_peer_republishes_its_card_when_its_tools_change(make_settings: Callable[..., PeerSettings], relay: Relay) -> None:
    extra = MCPServer("extra")

    @extra.tool()
    def shout(text: str) -> str:
        """Upper-case `text`."""
        return text.upper()

    async with Node(make_settings(relays=[relay.url], **MESH_FIELDS)) as node:
        await wait_attached(relay.url, node.peer_id)
        await node.tools.add_provider(HostedServer(extra))
        async with httpx.AsyncClient(headers=AUTH) as http:
            with anyio.fail_after(10):
                while True:
                    listed = (await http.get(relay.url + "/peers")).json()["peers"]
                    if [t["name"] for t in listed[0]["card"]["tools"]] == ["shout"]:
                        break
                    await anyio.sleep(0.1)


async def test_unknown_peer_id_gets_404_that_explains(relay: Relay) -> None:
    async with httpx.AsyncClient(headers=AUTH) as http:
        response = await http.post(relayed_url(relay.url, "nosuchpeer0000000"), json={})
    assert response.status_code == 404
    assert "no peer 'nosuchpeer0000000' is attached to this relay" in response.json()["error"]["message"]
    with pytest.raises(PeerError, match="no peer 'nosuchpeer0000000' is attached"):
        async with connect(relayed_url(relay.url, "nosuchpeer0000000"), headers=AUTH):
            pass


async def test_relay_answers_only_mesh_members(make_settings: Callable[..., PeerSettings], relay: Relay) -> None:
    async with Node(make_settings(relays=[relay.url], **MESH_FIELDS)) as node:
        await wait_attached(relay.url, node.peer_id)
        async with httpx.AsyncClient() as http:
            for path in ("/peers", f"/p/{node.peer_id}/mcp"):
                missing = await http.get(relay.url + path)
                wrong = await http.get(relay.url + path, headers={"Authorization": "Bearer not-the-secret-at-all"})
                assert (missing.status_code, wrong.status_code) == (401, 401)
                assert "no mesh credential was sent" in missing.json()["error"]["message"]
                assert "mcpfed join" in missing.json()["error"]["message"]
                assert "not this mesh's" in wrong.json()["error"]["message"]
            assert (await http.get(relay.url + "/health")).status_code == 200
        with pytest.raises(PeerError, match="no mesh credential was sent"):
            async with connect(relayed_url(relay.url, node.peer_id)):
                pass
        with pytest.raises(InvalidStatus) as refused:
            async with raw_tunnel(relay.url, headers={}):
                pass
        assert refused.value.response.status_code == 401
        assert b"mcpfed join" in refused.value.response.body


async def test_peer_started_while_its_relay_is_down_serves_locally_and_attaches_later(
    make_settings: Callable[..., PeerSettings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    relay_url = f"http://127.0.0.1:{port}"
    caplog.set_level(logging.DEBUG, logger="federation.discovery.relay")
    async with Node(make_settings(relays=[relay_url], **MESH_FIELDS)) as node:
        async with connect(node.mcp_url, headers=AUTH) as client:
            await client.list_tools()  # serving locally
        await anyio.sleep(1.0)  # several reconnect attempts
        warnings = [r for r in caplog.records if r.name == "federation.discovery.relay" and r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "serving locally and retrying" in warnings[0].getMessage()
        async with Relay(RelaySettings(port=port, home=tmp_path / "late-relay", **MESH_FIELDS)) as relay:
            await wait_attached(relay.url, node.peer_id, timeout=5)
            async with connect(relayed_url(relay.url, node.peer_id), headers=AUTH) as client:
                await client.list_tools()


async def test_relays_sharing_a_database_list_the_whole_mesh_and_point_to_each_other(
    make_settings: Callable[..., PeerSettings], tmp_path: Path, db_url: str
) -> None:
    """On SQLite and on PostgreSQL (`db_url`): two relays, one directory."""
    shared = db_url
    async with Relay(RelaySettings(port=0, home=tmp_path / "a", db=shared, **MESH_FIELDS)) as first, Relay(
        RelaySettings(port=0, home=tmp_path / "b", db=shared, **MESH_FIELDS)
    ) as second:
        async with Node(make_settings(relays=[first.url], **MESH_FIELDS)) as node:
            await wait_attached(first.url, node.peer_id)
            async with httpx.AsyncClient(headers=AUTH) as http:
                listed = (await http.get(second.url + "/peers")).json()["peers"]
                wrong_relay = await http.post(relayed_url(second.url, node.peer_id), json={})
    assert [(e["card"]["id"], e["relay"], e["here"]) for e in listed] == [(node.peer_id, first.public_url, False)]
    assert wrong_relay.status_code == 404
    assert f"attached to relay {first.public_url}, not this one: use {relayed_url(first.public_url, node.peer_id)}" in wrong_relay.json()["error"]["message"]
