"""DNS rebinding: every route of a peer and of a relay refuses a foreign Host (421) or a foreign page's Origin (403)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import Message, Receive, Scope, Send

from federation.const import (
    CARD_MARKDOWN_PATH,
    CARD_PATH,
    EVENTS_PATH,
    HEALTH_PATH,
    MCP_PATH,
    METRICS_PATH,
    PEERS_PATH,
    TUNNEL_PATH,
)
from federation.hostguard import HOST_REFUSED_CODE, HostGuard
from federation.node import Node
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from tests.support.relay import AUTH, MESH_FIELDS

pytestmark = pytest.mark.anyio

NODE_ROUTES = [MCP_PATH, CARD_PATH, CARD_MARKDOWN_PATH, HEALTH_PATH, PEERS_PATH, EVENTS_PATH, METRICS_PATH]
WEBSOCKET_HANDSHAKE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}


@pytest.fixture
async def open_peer(make_settings: Callable[..., PeerSettings]) -> AsyncIterator[Node]:
    """A peer outside any mesh (so no credential stands in the attacker's way), bound to loopback."""
    async with Node(make_settings(allowed_hosts=["peer.example.com"])) as node:
        yield node


def _assert_refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, (response.request.url.path, response.status_code, response.text[:200])
    error = response.json()["error"]
    assert error["code"] == HOST_REFUSED_CODE and error["data"]["reason"] == reason
    assert "--allowed-host" in error["message"]


@pytest.mark.parametrize("path", NODE_ROUTES)
async def test_every_route_of_an_open_peer_refuses_a_rebound_host(open_peer: Node, path: str) -> None:
    async with httpx.AsyncClient(base_url=open_peer.url) as http:
        response = await http.request("POST" if path == MCP_PATH else "GET", path, headers={"Host": f"evil.example:{open_peer.port}"})
    _assert_refused(response, 421, "host_not_allowed")


@pytest.mark.parametrize("path", [PEERS_PATH, EVENTS_PATH, MCP_PATH])
async def test_a_page_of_a_foreign_origin_is_refused(open_peer: Node, path: str) -> None:
    async with httpx.AsyncClient(base_url=open_peer.url) as http:
        response = await http.request("POST" if path == MCP_PATH else "GET", path, headers={"Origin": "http://evil.example"})
    _assert_refused(response, 403, "origin_not_allowed")


async def test_the_names_a_peer_is_reached_by_are_served(open_peer: Node) -> None:
    hosts = [f"127.0.0.1:{open_peer.port}", f"localhost:{open_peer.port}", "[::1]", "10.1.2.3:8801", "peer.example.com", "PEER.example.com:443"]
    async with httpx.AsyncClient(base_url=open_peer.url) as http:
        for host in hosts:
            assert (await http.get(PEERS_PATH, headers={"Host": host})).status_code == 200, host
        same_page = {"Host": f"127.0.0.1:{open_peer.port}", "Origin": f"http://127.0.0.1:{open_peer.port}"}
        assert (await http.get(PEERS_PATH, headers=same_page)).status_code == 200
        inspector = {"Origin": "http://localhost:6274"}  # a browser client on this machine
        assert (await http.get(PEERS_PATH, headers=inspector)).status_code == 200
        assert (await http.get(PEERS_PATH, headers={"Origin": "null"})).status_code == 403


async def test_an_mcp_client_reaches_a_peer_by_an_allowed_name(open_peer: Node) -> None:
    """The SDK's own Host check is off (ours covers /mcp): on a loopback peer it would refuse this name."""
    async with httpx2.AsyncClient(headers={"Host": "peer.example.com"}) as http, Client(streamable_http_client(open_peer.mcp_url, http_client=http)) as client:
        await client.list_tools()


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    async with Relay(RelaySettings(port=0, home=tmp_path / "relay", public_url="https://relay.example.com", **MESH_FIELDS)) as running:
        yield running


@pytest.mark.parametrize("path", [HEALTH_PATH, PEERS_PATH, "/p/somepeer/mcp"])
async def test_every_route_of_a_relay_refuses_a_rebound_host(relay: Relay, path: str) -> None:
    async with httpx.AsyncClient(base_url=relay.url, headers=AUTH) as http:
        _assert_refused(await http.get(path, headers={"Host": "evil.example"}), 421, "host_not_allowed")
        assert (await http.get(path, headers={"Host": "relay.example.com"})).status_code != 421  # its public name


async def test_a_relay_refuses_a_tunnel_handshake_for_a_rebound_host(relay: Relay) -> None:
    async with httpx.AsyncClient(base_url=relay.url, headers=AUTH) as http:
        response = await http.get(TUNNEL_PATH, headers={**WEBSOCKET_HANDSHAKE, "Host": "evil.example"})
    _assert_refused(response, 421, "host_not_allowed")


async def test_a_request_without_a_host_header_is_refused(open_peer: Node) -> None:
    async with await anyio.connect_tcp("127.0.0.1", open_peer.port) as stream:
        await stream.send(f"GET {PEERS_PATH} HTTP/1.0\r\n\r\n".encode())
        answer = b""
        with anyio.fail_after(10):
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    answer += await stream.receive()
    assert answer.startswith(b"HTTP/1.1 421 ") and b"no Host header" in answer


async def _status_through_guard(guard: HostGuard, host: bytes, origin: bytes | None = None) -> int:
    """The status a bare `HostGuard` answers with (200: let through) for one request with these headers."""
    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    headers = [(b"host", host), *([(b"origin", origin)] if origin is not None else [])]
    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b""}
    await guard(scope, _receive_nothing, send)
    return statuses[0]


async def _receive_nothing() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_a_host_once_let_through_does_not_let_a_foreign_origin_through_later() -> None:
    guard = HostGuard(_ok, names=["localhost"])
    for _ in range(2):  # the second time from what the guard remembers
        assert await _status_through_guard(guard, b"localhost:8801") == 200
        assert await _status_through_guard(guard, b"localhost:8801", b"http://evil.example") == 403
        assert await _status_through_guard(guard, b"evil.example:8801") == 421


async def test_a_flood_of_made_up_hosts_keeps_what_the_guard_remembers_bounded() -> None:
    guard = HostGuard(_ok, names=["localhost"])
    for index in range(3000):
        assert await _status_through_guard(guard, f"evil{index}.example".encode()) == 421
    assert len(guard._verdicts) <= 1024
    assert await _status_through_guard(guard, b"127.0.0.1:1") == 200
