"""The standard documents a peer publishes about itself, all generated from its signed card.

- `GET /.well-known/mcp/server-card` and the `mcp://server-card.json` resource:
  an MCP Server Card (SEP-2127 draft). The mesh's own data (id, key, models
  with their sha256, load, relays, signature) rides under
  `_meta["io.mcp-federation/peer"]` as the signed card itself, so a reader
  can check it with `federation.card.verify_card`.
- `GET /.well-known/agent-card.json`: an A2A agent card (skills from the
  peer's tools and models; the mesh bearer as its security scheme).
- `GET /llms.txt`: the llms.txt format (H1, blockquote, H2 link lists) for
  language models: the card for people (`/peer.md`) and the peer's notes as
  `ai://<peer>/<path>`.

Nothing here is kept by hand: each document is rebuilt per request from
`Node.card()` (the same signed card `/peer` serves), the definitions of the
tools that card names, and the notes listing. The routes sit behind the same
guards as `/peer` (the Host guard everywhere, the mesh credential inside a
mesh), so they tell a reader nothing `/peer` and `/mcp` would not; they add
the CORS headers the draft asks for, which help the browser origins the Host
guard lets through (a page on this peer, the MCP Inspector on loopback).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mcp.types as types
from mcp.server.mcpserver import MCPServer
from mcp_types.version import SUPPORTED_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from federation.card import PeerCard
from federation.const import CARD_MARKDOWN_PATH, CARD_PATH, MCP_PATH
from federation.urls import note_uri

__all__ = [
    "AGENT_CARD_PATH",
    "LLMS_TXT_PATH",
    "PEER_META_KEY",
    "SERVER_CARD_PATH",
    "SERVER_CARD_RESOURCE",
    "SERVER_CARD_URI",
    "Publication",
    "agent_card",
    "llms_txt",
    "server_card",
]

SERVER_CARD_PATH = "/.well-known/mcp/server-card"
SERVER_CARD_URI = "mcp://server-card.json"
AGENT_CARD_PATH = "/.well-known/agent-card.json"
LLMS_TXT_PATH = "/llms.txt"
PEER_META_KEY = "io.mcp-federation/peer"
"""`_meta` key of the server card under which the signed peer card travels."""

SERVER_CARD_RESOURCE = types.Resource(uri=SERVER_CARD_URI, name="server-card.json", title="MCP Server Card", mime_type="application/json")
"""The server card as an MCP resource (SEP-2127: servers SHOULD offer it so)."""

_SERVER_CARD_SCHEMA = "https://static.modelcontextprotocol.io/schemas/v1/server-card.schema.json"
_NAMESPACE = "io.mcp-federation"
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9._-]")
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET", "Access-Control-Allow-Headers": "Content-Type"}
_A2A_VERSION = "1.0"
_MESH_BEARER = "meshBearer"


def _version(card: PeerCard) -> str:
    """`mcp-federation/0.1.0` -> `0.1.0`: the software's version is the server's."""
    return card.software.rpartition("/")[2] or "0"


def _summary(card: PeerCard) -> str:
    models = ", ".join(m.name for m in card.models) or "no model"
    return f"mcp-federation peer {card.name} ({card.id}): {models}; {len(card.tools)} tools of its own, and the mesh's."


def _own_tools(card: PeerCard, tools: Sequence[types.Tool]) -> list[types.Tool]:
    """The definitions of exactly the tools the signed card names, in the card's order."""
    by_name = {t.name: t for t in tools}
    return [by_name[t.name] for t in card.tools if t.name in by_name]


def server_card(
    card: PeerCard,
    *,
    tools: Sequence[types.Tool],
    capabilities: types.ServerCapabilities,
    notes: Sequence[str] = (),
    relays: Sequence[str] = (),
    auth_required: bool,
) -> dict[str, Any]:
    """The MCP Server Card (SEP-2127 draft) of the peer `card` describes.

    `remotes` are the card's own endpoints; `tools` are the definitions of the
    tools the card names (the mesh's tools change at runtime, which
    `capabilities.tools.listChanged` says); `relays` are the relay URLs the
    peer attaches to (`<relay>/p/<id>/mcp` reaches it there).
    """
    headers = (
        [{"name": "Authorization", "description": "Bearer <mesh secret>, or a peer token addressed to this peer.", "isRequired": True, "isSecret": True}]
        if auth_required
        else []
    )
    remote = {
        "type": "streamable-http",
        "supportedProtocolVersions": list(SUPPORTED_PROTOCOL_VERSIONS),
        "headers": headers,
        "authentication": {"required": auth_required, "schemes": ["bearer"] if auth_required else []},
    }
    resources = [SERVER_CARD_RESOURCE.model_dump(mode="json", by_alias=True, exclude_none=True)]
    resources += [{"uri": note_uri(card.name, path), "name": path, "mimeType": "text/markdown"} for path in notes]
    return {
        "$schema": _SERVER_CARD_SCHEMA,
        "name": f"{_NAMESPACE}/{_NOT_IN_NAME.sub('-', card.name) or card.id}",
        "version": _version(card),
        "description": _summary(card),
        "title": card.name,
        "remotes": [{**remote, "url": url} for url in card.endpoints],
        "capabilities": capabilities.model_dump(mode="json", by_alias=True, exclude_none=True),
        "tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in _own_tools(card, tools)],
        "resources": resources,
        "prompts": [],
        "_meta": {PEER_META_KEY: {"card": card.model_dump(mode="json"), "relays": [f"{r.rstrip('/')}/p/{card.id}/mcp" for r in relays]}},
    }


def agent_card(card: PeerCard, *, auth_required: bool) -> dict[str, Any]:
    """The A2A agent card of the peer: its MCP endpoints as interfaces, its tools and models as skills.

    The peer speaks MCP, not A2A's JSON-RPC, so each interface says so in
    `protocolBinding` ("MCP"); an A2A client learns what the agent can do and
    where, and an MCP client can connect.
    """
    skills = [
        {"id": f"tool:{t.name}", "name": t.name, "description": t.description or t.name, "tags": ["mcp-tool"]}
        for t in card.tools
    ]
    skills += [
        {
            "id": f"model:{m.name}",
            "name": m.name,
            "description": f"{m.architecture} model, {m.quantization}, {m.n_ctx}-token context; sha256 {m.sha256}.",
            "tags": ["llm", m.architecture],
        }
        for m in card.models
    ]
    document: dict[str, Any] = {
        "name": card.name,
        "description": _summary(card),
        "supportedInterfaces": [{"url": url, "protocolBinding": "MCP", "protocolVersion": _A2A_VERSION} for url in card.endpoints],
        "version": _version(card),
        "capabilities": {"streaming": True, "pushNotifications": False},
        "defaultInputModes": ["application/json", "text/plain"],
        "defaultOutputModes": ["application/json", "text/plain"],
        "skills": skills,
    }
    if auth_required:
        document["securitySchemes"] = {
            _MESH_BEARER: {"httpAuthSecurityScheme": {"scheme": "bearer", "description": "The mesh secret, or a peer token addressed to this peer."}}
        }
        document["securityRequirements"] = [{"schemes": {_MESH_BEARER: {"list": []}}}]
    return document


def llms_txt(card: PeerCard, *, notes: Sequence[str] = ()) -> str:
    """The peer in the llms.txt format: H1 name, blockquote summary, H2 sections of links.

    Links are absolute, to the card's first endpoint's host (relative without one).
    """
    base_url = card.endpoints[0].removesuffix(MCP_PATH) if card.endpoints else ""
    lines = [f"# {card.name}", "", f"> {_summary(card)}", "", "## Peer", ""]
    lines += [
        f"- [{card.name} for people]({base_url}{CARD_MARKDOWN_PATH}): models, tools, load and signature",
        f"- [Signed card]({base_url}{CARD_PATH}): the JSON every document here is made from",
        *(f"- [MCP endpoint]({url}): Streamable HTTP" for url in card.endpoints),
        "",
        "## Notes",
        "",
    ]
    lines += [f"- [{path}]({note_uri(card.name, path)})" for path in notes] or ["(this peer shares no notes)"]
    return "\n".join([*lines, ""])


Notes = Callable[[], Awaitable[list[str]]]
"""The relative paths of the notes the peer shares (none without `--notes`)."""


@dataclass(frozen=True)
class Publication:
    """What the documents are made from, each read afresh per request, and the routes that serve them."""

    card: Callable[[], PeerCard]
    tools: Callable[[], Sequence[types.Tool]]
    capabilities: Callable[[], types.ServerCapabilities]
    notes: Notes
    relays: Sequence[str]
    auth_required: bool

    async def server_card_json(self) -> str:
        """The server card as the `mcp://server-card.json` resource's text."""
        return json.dumps(await self.server_card(), separators=(",", ":"))

    def resource_server(self) -> MCPServer:
        """An in-process server offering the server card as `mcp://server-card.json`; the content host
        (`federation.content`) lists and reads it beside the peer's other resources."""
        server = MCPServer("server-card", version="0.1.0", log_level="WARNING")
        resource = SERVER_CARD_RESOURCE
        server.resource(resource.uri, name=resource.name, title=resource.title, mime_type=resource.mime_type)(self.server_card_json)
        return server

    async def server_card(self) -> dict[str, Any]:
        return server_card(
            self.card(),
            tools=self.tools(),
            capabilities=self.capabilities(),
            notes=await self.notes(),
            relays=self.relays,
            auth_required=self.auth_required,
        )

    def routes(self) -> list[Route]:
        return [
            Route(SERVER_CARD_PATH, self._get_server_card, methods=["GET"]),
            Route(AGENT_CARD_PATH, self._get_agent_card, methods=["GET"]),
            Route(LLMS_TXT_PATH, self._get_llms_txt, methods=["GET"]),
        ]

    async def _get_server_card(self, request: Request) -> Response:
        return JSONResponse(await self.server_card(), headers=_CORS)

    async def _get_agent_card(self, request: Request) -> Response:
        return JSONResponse(agent_card(self.card(), auth_required=self.auth_required), headers=_CORS)

    async def _get_llms_txt(self, request: Request) -> Response:
        return PlainTextResponse(llms_txt(self.card(), notes=await self.notes()), media_type="text/markdown", headers=_CORS)
