"""Relays and membership proof: a peer sends a relay nothing that carries a credential until it proved itself a member.

The attackers are logging HTTP servers standing where a peer was told a relay
is; each test asserts on what they received.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from federation.client import connect
from federation.const import PEERS_PATH, PROOF_PATH
from federation.discovery.relay import relayed_url
from federation.node import Node
from federation.proof import MeshKeys
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from tests.support.hostile import Received, attacker
from tests.support.paths import NOTES
from tests.support.relay import AUTH, MESH, MESH_FIELDS, wait_attached
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    async with Relay(RelaySettings(port=0, home=tmp_path / "relay", **MESH_FIELDS)) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_peers_reach_each_other_through_a_relay_with_tokens_addressed_to_each(make_settings: Callable[..., PeerSettings], relay: Relay) -> None:
    async with Node(make_settings(name="behind", relays=[relay.url], **MESH_FIELDS)) as behind:
        await wait_attached(relay.url, behind.peer_id)
        keys, outsider = MeshKeys(MESH.secret), "a" * 16
        async with httpx.AsyncClient() as http:
            to_relay = await http.get(relay.url + PEERS_PATH, headers=bearer(keys.token(outsider, relay.relay_id)))
            assert to_relay.status_code == 200 and behind.peer_id in {e["card"]["id"] for e in to_relay.json()["peers"]}
            to_someone_else = await http.get(relay.url + PEERS_PATH, headers=bearer(keys.token(outsider, behind.peer_id)))
            assert to_someone_else.status_code == 401 and "addressed to another peer" in to_someone_else.json()["error"]["message"]
            through = relayed_url(relay.url, behind.peer_id).removesuffix("/mcp") + "/peer"
            assert (await http.get(through, headers=bearer(keys.token(outsider, behind.peer_id)))).status_code == 200
            assert (await http.get(through, headers=bearer(keys.token(outsider, relay.relay_id)))).status_code == 401
        async with connect(relayed_url(relay.url, behind.peer_id), headers=bearer(keys.token(outsider, behind.peer_id))) as client:
            await client.list_tools()


async def test_peers_show_the_relay_tokens_never_the_secret(make_settings: Callable[..., PeerSettings], tmp_path: Path) -> None:
    relay = Relay(RelaySettings(port=0, home=tmp_path / "recording-relay", **MESH_FIELDS))
    presented: list[str] = []
    guarded = relay.app

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:  # what reaches the relay's guard
        presented.extend(value.decode() for key, value in scope.get("headers", []) if key == b"authorization")
        await guarded(scope, receive, send)

    relay.app = recording
    async with (
        relay,
        Node(make_settings(name="caller", relays=[relay.url], **MESH_FIELDS)) as caller,
        Node(make_settings(name="notes", notes=NOTES, relays=[relay.url], **MESH_FIELDS)) as notes,
        connect(caller.mcp_url, headers=AUTH) as client,  # the user, straight to the caller with the raw secret
    ):
        await wait_until(lambda: notes.peer_id in caller.peers, "the caller learned the other peer from the relay")

        async def listed() -> bool:
            return "notes__search_notes" in {tool.name for tool in (await client.list_tools()).tools}

        await wait_until(listed, "the other peer's tools listed through the relay")
        found = await client.call_tool("notes__search_notes", {"query": "relay"})
        assert not found.is_error
    assert presented and all(value.startswith("Bearer mcpfed-t1.") for value in presented), presented


async def test_a_stranger_where_the_relay_should_be_gets_no_credential(
    make_settings: Callable[..., PeerSettings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="federation.discovery.relay")
    async with attacker() as stranger:
        async with Node(make_settings(name="trusting", relays=[stranger.url], **MESH_FIELDS)):
            await wait_until(lambda: len(stranger.received) >= 2, "the peer tried the relay more than once")
        assert {(seen.method, seen.path) for seen in stranger.received} == {("POST", PROOF_PATH)}  # no tunnel, no /peers
        assert any("not a member of this mesh" in r.getMessage() for r in caplog.records)
    stranger.assert_got_no_credential(MESH.secret)


async def test_a_stranger_forwarding_a_members_proof_as_a_relay_is_caught(make_settings: Callable[..., PeerSettings]) -> None:
    async with Node(make_settings(name="member", **MESH_FIELDS)) as member, httpx.AsyncClient() as http:

        async def forward_to_member(received: Received) -> Response:
            answer = await http.post(member.url + PROOF_PATH, content=received.body, headers={"content-type": "application/json"})
            return Response(answer.content, status_code=answer.status_code, media_type="application/json")

        async with attacker(forward_to_member) as stranger, Node(make_settings(name="trusting", relays=[stranger.url], **MESH_FIELDS)):
            await wait_until(lambda: len(stranger.received) >= 2, "the peer tried the relay more than once")
        assert {(seen.method, seen.path) for seen in stranger.received} == {("POST", PROOF_PATH)}
        stranger.assert_got_no_credential(MESH.secret)
