"""The `mesh_*` tools every peer offers: `mesh_peers`, `mesh_ask`, `mesh_fan_out`, `mesh_call`, `mesh_search`.

A thin MCP face over the router (`federation.routing.router`): arguments
become a chat request or a call, peer errors become tool errors the caller
(often a model) can read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Protocol

import mcp.types as types
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from federation.contract import PeerRow
from federation.errors import PeerError
from federation.peers import Peer
from federation.routing.search import SEARCH_TOOL, MeshSearch, Sharer, search_everywhere
from federation.routing.transports import ProgressRelay
from federation.toolhost import error_result
from federation.trace import Trace

__all__ = ["AskResult", "Attempt", "FanOutResult", "MeshRouting", "build_mesh_server"]


class Attempt(BaseModel):
    peer: str
    peer_name: str
    outcome: str
    ms: float
    error: str | None = None


class AskResult(BaseModel):
    text: str
    peer: str = Field(description="id of the peer that finally answered")
    peer_name: str
    model: str | None = None
    usage: dict[str, Any] = Field(default_factory=dict)
    trace_id: str
    attempts: list[Attempt] = Field(description="every peer tried, in order (failover shows here)")


class FanOutResult(BaseModel):
    answers: list[AskResult]
    failed: list[Attempt]
    trace_id: str


class MeshRouting(Protocol):
    """What the mesh tools ask of the router."""

    def known_peers(self) -> Iterable[Peer]: ...

    async def ask(
        self,
        arguments: dict[str, Any],
        trace: Trace,
        *,
        model: str | None = None,
        peer: str | None = None,
        on_progress: ProgressRelay | None = None,
        ctx: ServerRequestContext[Any] | None = None,
    ) -> AskResult: ...

    async def fan_out(self, arguments: dict[str, Any], n: int, trace: Trace, *, model: str | None = None, ctx: ServerRequestContext[Any] | None = None) -> FanOutResult: ...

    async def call_peer(
        self, ctx: ServerRequestContext[Any], peer: str, tool: str, arguments: dict[str, Any], trace: Trace, answers: types.InputResponseRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult: ...

    def note_sharers(self) -> list[Sharer]: ...


def _trace_of(ctx: Context) -> Trace:
    """The caller's trace (the tool host already refused loops and hop overruns)."""
    return Trace.from_meta(dict(ctx.request_context.meta or {}))


def _chat_arguments(prompt: str, max_tokens: int, temperature: float) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": temperature}


def build_mesh_server(router: MeshRouting) -> MCPServer:
    server: MCPServer = MCPServer("mesh", log_level="WARNING")

    @server.tool()
    def mesh_peers() -> list[PeerRow]:
        """The peers this peer knows, one row each as `GET /peers` serves them: id, name, via (how reached: static, mdns or
        relay), url, routes, status (up, suspect or dead), models, tools (how many), in_flight, queued, latency_ms,
        calls_served, last_seen (unix time), mesh, digest (changes when its tools or models do)."""
        return [p.row() for p in router.known_peers()]

    @server.tool()
    async def mesh_ask(
        prompt: Annotated[str, Field(description="What to ask.")],
        ctx: Context,
        model: Annotated[str | None, Field(description="Only peers whose model name contains this.")] = None,
        peer: Annotated[str | None, Field(description="Ask this peer (name or id) and no other.")] = None,
        max_tokens: Annotated[int, Field(ge=1, description="Most tokens to generate.")] = 256,
        temperature: Annotated[float, Field(ge=0.0, le=5.0)] = 0.7,
    ) -> AskResult:
        """Ask the mesh: routed to the least busy able peer (or `peer`); the answer streams as progress."""
        try:
            request = ctx.request_context
            return await router.ask(
                _chat_arguments(prompt, max_tokens, temperature), _trace_of(ctx), model=model, peer=peer, on_progress=request.session.report_progress, ctx=request
            )
        except PeerError as exc:
            raise ToolError(str(exc)) from exc

    @server.tool()
    async def mesh_fan_out(
        prompt: Annotated[str, Field(description="What to ask every chosen peer.")],
        ctx: Context,
        n: Annotated[int, Field(ge=1, le=32, description="How many answers to gather.")] = 2,
        model: Annotated[str | None, Field(description="Only peers whose model name contains this.")] = None,
        max_tokens: Annotated[int, Field(ge=1)] = 128,
        temperature: Annotated[float, Field(ge=0.0, le=5.0)] = 0.9,
    ) -> FanOutResult:
        """Ask `n` peers the same prompt in parallel, on distinct peers where there are enough."""
        try:
            return await router.fan_out(_chat_arguments(prompt, max_tokens, temperature), n, _trace_of(ctx), model=model, ctx=ctx.request_context)
        except PeerError as exc:
            raise ToolError(str(exc)) from exc

    @server.tool()
    async def mesh_call(
        peer: Annotated[str, Field(description="Peer name or id (see mesh_peers).")],
        tool: Annotated[str, Field(description="Tool name on that peer.")],
        ctx: Context,
        arguments: Annotated[dict[str, Any] | None, Field(description="The tool's arguments.")] = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Call any tool on a named peer; its result (or error) comes back unchanged."""
        answers = types.InputResponseRequestParams(input_responses=ctx.input_responses, request_state=ctx.request_state)  # a retry after the tool asked the user
        try:
            return await router.call_peer(ctx.request_context, peer, tool, arguments or {}, _trace_of(ctx), answers)
        except PeerError as exc:  # the text as `<peer>__<tool>` and `Mesh.call` give it, without the SDK's "Error executing tool" prefix
            return error_result(str(exc))

    @server.tool()
    async def mesh_search(
        query: Annotated[str, Field(description="Words to look for in every peer's notes, e.g. 'relay NAT'.")],
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=50, description="Most hits to return, across all peers.")] = 10,
        deadline_s: Annotated[float, Field(gt=0, le=60, description="How long to wait for the peers; the slower ones are named in `unanswered`.")] = 5.0,
    ) -> MeshSearch:
        """Search the notes of every peer that shares notes, in parallel: ranked snippets, each cited as
        `ai://<peer>/<path>` (read it with mesh_call(peer, "read_note", {"path": ...})); peers that did not answer
        within `deadline_s` are named."""
        if not any(character.isalnum() for character in query):
            raise ToolError("the query has no words to search for; try e.g. 'mdns discovery'.")
        sharers = router.note_sharers()
        if not sharers:
            raise ToolError("no peer that is up shares notes (`mcpfed serve --notes DIR`); see mesh_peers.")
        trace, request = _trace_of(ctx), ctx.request_context

        async def search(sharer: Sharer, arguments: dict[str, Any]) -> types.CallToolResult:
            result = await router.call_peer(request, sharer.id, SEARCH_TOOL, arguments, trace, types.InputResponseRequestParams())
            if not isinstance(result, types.CallToolResult):  # search_notes never asks the user; a peer whose does is not searched
                raise PeerError(f"{SEARCH_TOOL} asked for input instead of answering")
            return result

        return await search_everywhere(sharers, search, query, limit=limit, deadline_s=deadline_s, trace_id=trace.trace_id)

    return server
