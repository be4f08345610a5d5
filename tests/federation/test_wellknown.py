"""The standard documents (MCP Server Card, A2A agent card, llms.txt): made from the signed card, guarded like `/peer`."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from a2a.client.card_resolver import A2ACardResolver
from a2a.types import AgentCard
from a2a.utils.proto_utils import validate_proto_required_fields
from google.protobuf.json_format import ParseDict
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from federation.card import ModelSummary, PeerCard, ToolSummary, sign_card, verify_card
from federation.identity import Identity
from federation.node import Node
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.wellknown import AGENT_CARD_PATH, LLMS_TXT_PATH, PEER_META_KEY, SERVER_CARD_PATH, SERVER_CARD_URI, agent_card
from tests.support.relay import AUTH, MESH_FIELDS, wait_attached

pytestmark = pytest.mark.anyio

DOCUMENTS = (SERVER_CARD_PATH, AGENT_CARD_PATH, LLMS_TXT_PATH)
REGISTRY_NAME = re.compile(r"[A-Za-z0-9.-]+/[A-Za-z0-9._-]+")
"""The MCP registry's `server.json` name: reverse-DNS namespace, exactly one slash, server name."""


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    (folder / "net").mkdir(parents=True)
    (folder / "relay.md").write_text("# Relay\n\nThe relay carries traffic across NAT.\n")
    (folder / "net" / "mdns.md").write_text("# mDNS\n\nPeers find each other on the LAN.\n")
    return folder


@pytest.fixture
async def alice(start_node: Callable[..., AbstractAsyncContextManager[Node]], notes: Path) -> AsyncIterator[Node]:
    async with start_node(name="alice", notes=notes) as node:
        yield node


async def _get(url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(url, headers=headers)


async def test_server_card_is_the_signed_card_in_the_drafts_shape(alice: Node) -> None:
    response = await _get(alice.url + SERVER_CARD_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    document = response.json()
    signed = verify_card(document["_meta"][PEER_META_KEY]["card"])  # the mesh's data travels as the card itself, still verifiable
    assert signed.id == alice.peer_id
    assert document["name"] == "io.mcp-federation/alice" and REGISTRY_NAME.fullmatch(document["name"])
    assert (document["title"], document["version"]) == ("alice", signed.software.rpartition("/")[2])
    assert alice.peer_id in document["description"]
    assert [remote["url"] for remote in document["remotes"]] == signed.endpoints == [alice.mcp_url]
    remote = document["remotes"][0]
    assert remote["type"] == "streamable-http"
    assert {"2025-11-25", "2026-07-28"} <= set(remote["supportedProtocolVersions"])
    assert remote["authentication"] == {"required": False, "schemes": []} and remote["headers"] == []
    assert [tool["name"] for tool in document["tools"]] == [tool.name for tool in signed.tools] == ["search_notes", "read_note"]
    assert all(tool["inputSchema"]["type"] == "object" for tool in document["tools"])
    assert document["capabilities"]["tools"] == {"listChanged": True}
    uris = {resource["uri"] for resource in document["resources"]}
    assert uris == {SERVER_CARD_URI, "ai://alice/relay.md", "ai://alice/net/mdns.md"}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_server_card_is_also_the_mcp_server_card_resource(alice: Node, mode: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http, Client(streamable_http_client(alice.mcp_url, http_client=http), mode=mode) as client:  # type: ignore[arg-type]
        listed = await client.list_resources()
        assert SERVER_CARD_URI in {str(resource.uri) for resource in listed.resources}
        read = await client.read_resource(SERVER_CARD_URI)
    (contents,) = read.contents
    assert contents.mime_type == "application/json"
    document = json.loads(contents.text)  # type: ignore[union-attr]
    over_http = (await _get(alice.url + SERVER_CARD_PATH)).json()
    for field in ("name", "version", "remotes", "tools", "resources", "capabilities"):
        assert document[field] == over_http[field], field


async def test_unknown_resource_is_refused_with_a_clear_error(alice: Node) -> None:
    async with httpx2.AsyncClient(timeout=10) as http, Client(streamable_http_client(alice.mcp_url, http_client=http)) as client:
        with pytest.raises(MCPError, match=re.escape("no resource mcp://nothing.json on this peer or the peers it knows")):
            await client.read_resource("mcp://nothing.json")


async def test_agent_card_is_a_valid_a2a_card(alice: Node) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        parsed = await A2ACardResolver(http, alice.url).get_agent_card()  # the SDK's own client reads it from the well-known path
        raw = (await http.get(alice.url + AGENT_CARD_PATH)).json()
    strict = ParseDict(raw, AgentCard())  # every field is one the A2A types define
    validate_proto_required_fields(strict)
    assert parsed == strict
    assert (strict.name, strict.version) == ("alice", "0.1.0")
    assert [(i.url, i.protocol_binding) for i in strict.supported_interfaces] == [(alice.mcp_url, "MCP")]
    assert [skill.id for skill in strict.skills] == ["tool:search_notes", "tool:read_note"]
    assert not strict.security_schemes, "a peer outside a mesh asks for no credential"


def test_agent_card_skills_cover_models_and_the_mesh_bearer(tmp_path: Path) -> None:
    model = ModelSummary(name="gemma-3-270m", architecture="gemma3", quantization="Q4_K_M", size_bytes=1, sha256="ab" * 32, n_ctx=2048)
    card = sign_card(
        PeerCard(id="", name="bob", pubkey="", endpoints=["http://127.0.0.1:1/mcp"], models=[model], tools=[ToolSummary(name="chat")]),
        Identity.load_or_create(tmp_path),
    )
    strict = ParseDict(agent_card(card, auth_required=True), AgentCard())
    validate_proto_required_fields(strict)
    assert [skill.id for skill in strict.skills] == ["tool:chat", "model:gemma-3-270m"]
    assert "ab" * 32 in strict.skills[1].description
    assert strict.security_schemes["meshBearer"].http_auth_security_scheme.scheme == "bearer"
    assert list(strict.security_requirements[0].schemes) == ["meshBearer"]


async def test_llms_txt_links_the_card_and_the_notes(alice: Node) -> None:
    response = await _get(alice.url + LLMS_TXT_PATH)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/markdown")
    lines = response.text.splitlines()
    assert lines[0] == "# alice"
    assert lines[2].startswith("> ") and alice.peer_id in lines[2]
    assert [line for line in lines if line.startswith("## ")] == ["## Peer", "## Notes"]
    assert f"({alice.url}/peer.md)" in response.text
    assert "- [net/mdns.md](ai://alice/net/mdns.md)" in lines and "- [relay.md](ai://alice/relay.md)" in lines


async def test_documents_answer_only_requests_addressed_to_the_peer(alice: Node) -> None:
    for path in DOCUMENTS:
        assert (await _get(alice.url + path, host="evil.example")).status_code == 421
        assert (await _get(alice.url + path, origin="http://evil.example")).status_code == 403
        inspector = await _get(alice.url + path, origin="http://localhost:6274")  # a browser client on this machine (MCP Inspector)
        assert inspector.status_code == 200 and inspector.headers["access-control-allow-origin"] == "*"


async def test_in_a_mesh_the_documents_need_the_credential_as_peer_does(
    start_node: Callable[..., AbstractAsyncContextManager[Node]], tmp_path: Path
) -> None:
    async with Relay(RelaySettings(port=0, home=tmp_path / "relay", **MESH_FIELDS)) as relay, start_node(relays=[relay.url], **MESH_FIELDS) as node:
        await wait_attached(relay.url, node.peer_id)
        for base in (node.url, f"{relay.url}/p/{node.peer_id}"):
            for path in ("/peer", *DOCUMENTS):
                assert (await _get(base + path)).status_code == 401, base + path
                assert (await _get(base + path, **AUTH)).status_code == 200, base + path
        relayed: dict[str, Any] = (await _get(f"{relay.url}/p/{node.peer_id}{SERVER_CARD_PATH}", **AUTH)).json()
    assert verify_card(relayed["_meta"][PEER_META_KEY]["card"]).id == node.peer_id
    assert relayed["_meta"][PEER_META_KEY]["relays"] == [f"{relay.url}/p/{node.peer_id}/mcp"]
    (remote,) = relayed["remotes"]
    assert remote["authentication"] == {"required": True, "schemes": ["bearer"]}
    assert [(h["name"], h["isRequired"], h["isSecret"]) for h in remote["headers"]] == [("Authorization", True, True)]
