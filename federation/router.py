"""Routing: the mesh's tools on every peer, and the forwarding behind them.

Every peer's `/mcp` offers `mesh_peers`, `mesh_ask`, `mesh_call`,
`mesh_fan_out`, and each other peer's own tools as `<peer>__<tool>`. The
router keeps one long-lived SDK session per peer (never one per call),
passes progress notifications back to the caller as they arrive, forwards
the caller's remaining deadline, and stamps each hop's `_meta` with the trace
so loops are refused (see `federation.trace`).

Choosing a peer for a capability (`mesh_ask` without `peer`): among peers
that are up and serve a matching model, power of two choices on (calls we
have outstanding there + its reported load, health-ping latency), local peer
preferred on a tie. A capability call whose peer dies mid-call is retried
once on another able peer; a call to a named peer reports it unreachable.
Each remote result's signed receipt is verified and stored in the ledger.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import httpx2
import mcp.types as types
from anyio.abc import TaskGroup
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, Field

from federation.const import ANSWER_RESTARTS_PREFIX
from federation.errors import PeerError
from federation.events import Subscription
from federation.membership import auth_headers
from federation.peers import Peer
from federation.receipt import RECEIPT_META_KEY, served_by
from federation.toolhost import HostedServer, error_result
from federation.trace import Trace

if TYPE_CHECKING:
    from federation.node import Node

__all__ = ["Router", "namespaced"]

logger = logging.getLogger(__name__)

NAME_LIMIT = 64
_SEPARATOR = "__"
_FORBIDDEN = re.compile(r"[^A-Za-z0-9_-]")
_CONNECT_SECONDS = 5.0
_LIST_SECONDS = 5.0

ProgressRelay = Callable[[float, float | None, str | None], Awaitable[None]]


class PeerGone(PeerError):
    """The peer stopped answering during a call (connection lost, killed, timed out)."""


def namespaced(peer_label: str, tool: str) -> str:
    """`<peer>__<tool>` within 64 chars of [A-Za-z0-9_-]; a stable hash keeps shortened names unique."""
    peer_part = _FORBIDDEN.sub("_", peer_label).strip("_") or "peer"
    tool_part = _FORBIDDEN.sub("_", tool) or "tool"
    name = f"{peer_part}{_SEPARATOR}{tool_part}"
    if len(name) <= NAME_LIMIT and tool_part == tool:
        return name
    tag = hashlib.sha256(f"{peer_label}/{tool}".encode()).hexdigest()[:6]
    budget = NAME_LIMIT - len(_SEPARATOR) - len(tag) - 1
    peer_part = peer_part[: max(8, budget // 3)]
    return f"{peer_part}{_SEPARATOR}{tool_part[: budget - len(peer_part)]}_{tag}"


class _PeerLink:
    """One long-lived SDK session to a peer, owned by a task of its own.

    anyio requires a `Client` to be exited by the task that entered it, so the
    session lives in `run()`; callers borrow `client` while it is open.
    """

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self._headers = headers
        self.client: Client | None = None
        self.failure: str | None = None
        self._ready = anyio.Event()
        self._close = anyio.Event()
        self.closed = False

    async def run(self) -> None:
        try:
            timeout = httpx2.Timeout(_CONNECT_SECONDS, read=None)
            async with httpx2.AsyncClient(headers=self._headers, timeout=timeout) as http:
                async with Client(streamable_http_client(self.url, http_client=http)) as client:
                    self.client = client
                    self._ready.set()
                    await self._close.wait()
        except Exception as exc:  # noqa: BLE001 - a lost session is reported to whoever borrows it
            self.failure = str(_root(exc)) or type(_root(exc)).__name__
        finally:
            self.client = None
            self.closed = True
            self._ready.set()

    async def borrow(self) -> Client:
        with anyio.move_on_after(_CONNECT_SECONDS):
            await self._ready.wait()
        if self.client is None:
            raise PeerGone(f"no session with {self.url}: {self.failure or 'connect timed out'}")
        return self.client

    def close(self) -> None:
        self._close.set()


def _root(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class _RisingProgress:
    """Relays an answer's progress across attempts, values always rising (as MCP requires), with a restart notice between."""

    def __init__(self, relay: ProgressRelay | None) -> None:
        self._relay = relay
        self._base = 0.0
        self._last = 0.0

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self._last = self._base + progress
        if self._relay is not None:
            await self._relay(self._last, None if total is None else self._base + total, message)

    async def restart(self, notice: str) -> None:
        """What streamed so far is void: say so, and count on from here."""
        self._base = self._last = self._last + 1
        if self._relay is not None:
            await self._relay(self._last, None, notice)


@dataclass
class _Target:
    """A peer able to serve, as the chooser sees it."""

    id: str
    name: str
    local: bool
    load: int
    latency_ms: float
    peer: Peer | None = None

    def score(self) -> tuple[int, float, int]:
        return (self.load, self.latency_ms, 0 if self.local else 1)


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


class PeerInfo(BaseModel):
    id: str
    name: str
    via: str
    status: str
    models: list[str]
    tools: int
    in_flight: int
    latency_ms: float | None
    url: str


class Router:
    """The mesh's tool provider on one node; a node service (`async with Router(node)`)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._links: dict[str, _PeerLink] = {}
        self._remote_tools: dict[str, list[types.Tool]] = {}
        self._names: dict[str, tuple[str, str]] = {}  # namespaced -> (peer id, tool)
        self._exposed: list[types.Tool] = []
        self._listing: set[str] = set()  # peers whose tools are being listed right now
        self._listed: set[str] = set()  # peers whose tools were listed at least once (or failed to be)
        self.outstanding: Counter[str] = Counter()
        self._task_group: TaskGroup | None = None
        self._mesh_tools = HostedServer(self._build_mesh_server())

    # -- lifecycle -------------------------------------------------------
    async def __aenter__(self) -> Router:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        await self.node.tools.add_provider(self, local=False)
        self._task_group.start_soon(self._follow_peers, self.node.events.subscribe("peer_up", "peer_changed", "peer_down"))
        for peer in self.node.peers.up():
            self._task_group.start_soon(self._learn_tools, peer.id)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for link in self._links.values():
            link.close()
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(exc_type, exc, tb)

    async def _follow_peers(self, subscription: Subscription) -> None:
        async with subscription as events:
            async for event in events:
                peer_id = event.data.get("id")
                if event.kind in ("peer_up", "peer_changed") and peer_id:
                    assert self._task_group is not None
                    self._task_group.start_soon(self._learn_tools, peer_id)
                elif event.kind == "peer_down" and peer_id:
                    self._drop_link(peer_id)
                    if peer_id not in self.node.peers:  # it left or was forgotten; a dead one keeps its names
                        self._remote_tools.pop(peer_id, None)
                        self._listed.discard(peer_id)
                    await self._publish_tools()

    async def _learn_tools(self, peer_id: str) -> None:
        """Fetch a peer's own tools (schemas included) over its pooled session.

        Peers that join together are listed concurrently; clients hear one
        `tools/list_changed` when the last listing of such a burst ends.
        """
        peer = self.node.peers.get(peer_id)
        if peer is None:
            return
        self._listing.add(peer_id)
        try:
            client = await self._client(peer)
            with anyio.fail_after(_LIST_SECONDS):
                listed = await client.list_tools()
        except Exception as exc:  # noqa: BLE001 - an unreachable peer just offers nothing for now
            logger.info("could not list tools of %s (%s): %s", peer.name, peer_id, _root(exc))
            self._drop_link(peer_id)
        else:
            self._remote_tools[peer_id] = [t for t in listed.tools if not t.name.startswith("mesh_") and _SEPARATOR not in t.name]
        finally:
            self._listing.discard(peer_id)
            self._listed.add(peer_id)
        await self._publish_tools()

    def settled(self) -> bool:
        """Every peer that is up has had its tools listed (or failed to), and no listing is running."""
        return not self._listing and all(p.id in self._listed for p in self.node.peers.up())

    async def _publish_tools(self) -> None:
        """Rebuild `<peer>__<tool>` names; peers sharing a name get their id prefix appended.

        A dead peer's tools are no longer offered, but its names still resolve
        (until the peer is forgotten) so a call says the peer is unreachable
        rather than that the tool is unknown; live peers win any name clash.
        """
        known = [p for p in (self.node.peers.get(i) for i in sorted(self._remote_tools)) if p is not None]
        live = [p for p in known if p.status != "dead"]
        name_counts = Counter(p.name for p in live)
        names: dict[str, tuple[str, str]] = {}
        exposed: list[types.Tool] = []
        for peer in [*live, *(p for p in known if p.status == "dead")]:
            clash = name_counts[peer.name] > (0 if peer.status == "dead" else 1)
            label = f"{peer.name}-{peer.id[:6]}" if clash else peer.name
            for tool in self._remote_tools[peer.id]:
                name = namespaced(label, tool.name)
                if name in names:
                    continue
                names[name] = (peer.id, tool.name)
                if peer.status != "dead":
                    description = f"[on peer {peer.name} ({peer.id})] {tool.description or ''}".strip()
                    exposed.append(tool.model_copy(update={"name": name, "description": description}))
        self._names, self._exposed = names, exposed
        await self.node.tools.refresh(announce=not self._listing)

    # -- sessions ----------------------------------------------------------
    async def _client(self, peer: Peer) -> Client:
        link = self._links.get(peer.id)
        if link is None or link.closed or link.url != peer.url:
            if link is not None:
                link.close()
            link = _PeerLink(peer.url, auth_headers(self.node.settings))
            self._links[peer.id] = link
            assert self._task_group is not None
            self._task_group.start_soon(link.run)
        return await link.borrow()

    def lost(self, peer: Peer) -> None:
        """A call failed in transport: new session next time, and one liveness miss."""
        self._drop_link(peer.id)
        self.node.peers.miss(peer.id)

    def _drop_link(self, peer_id: str) -> None:
        link = self._links.pop(peer_id, None)
        if link is not None:
            link.close()

    def remote_tool(self, name: str) -> tuple[str, str] | None:
        """(peer id, tool) behind a `<peer>__<tool>` name (a dead peer's too), or None."""
        return self._names.get(name)

    def claims(self, name: str) -> bool:
        """Answers for `name` though it is not listed: a dead peer's tool, so the call can say why it fails."""
        return name in self._names

    # -- ToolProvider ------------------------------------------------------
    async def list_tools(self) -> list[types.Tool]:
        return [*(await self._mesh_tools.list_tools()), *self._exposed]

    async def call_tool(self, ctx: ServerRequestContext[Any], name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        if name not in self._names:
            return await self._mesh_tools.call_tool(ctx, name, arguments)
        peer_id, tool = self._names[name]
        trace = Trace.from_meta(dict(ctx.meta or {}))
        try:
            peer = self.peer(peer_id)
            return await self.forward(peer, tool, arguments, trace, ctx.session.report_progress)
        except PeerError as exc:
            return error_result(str(exc))

    # -- forwarding --------------------------------------------------------
    async def forward(self, peer: Peer, tool: str, arguments: dict[str, Any], trace: Trace, on_progress: ProgressRelay | None) -> types.CallToolResult:
        """Call `tool` on `peer` with the child trace; PeerGone if the peer fails to answer."""
        remaining = trace.remaining_s()
        if remaining <= 0:
            raise PeerGone(f"the caller's deadline passed before {tool} could be sent to {peer.name}")
        meta = trace.child_meta(self.node.peer_id)
        started, clock = time.time(), time.perf_counter()
        self.outstanding[peer.id] += 1
        try:
            client = await self._client(peer)
            result = await client.call_tool(tool, arguments, read_timeout_seconds=remaining, progress_callback=on_progress, meta=meta)
        except MCPError as exc:
            self.lost(peer)
            if exc.error.code == types.REQUEST_TIMEOUT:
                raise PeerGone(f"peer {peer.name} ({peer.id}) did not answer {tool} within {remaining:.0f} s") from exc
            raise PeerGone(f"peer {peer.name} ({peer.id}) failed during {tool}: {exc.error.message}") from exc
        except PeerGone:
            self.lost(peer)
            raise
        except Exception as exc:  # noqa: BLE001 - transport failures all mean the peer is gone for this call
            self.lost(peer)
            raise PeerGone(f"peer {peer.name} ({peer.id}) stopped answering during {tool}: {_root(exc)!r}") from exc
        finally:
            self.outstanding[peer.id] -= 1
        self.record_made(peer, tool, meta, result, started, (time.perf_counter() - clock) * 1000)
        return result

    def record_made(self, peer: Peer, tool: str, meta: dict[str, Any], result: types.CallToolResult, started: float, ms: float) -> None:
        """Ledger row for a call this peer made; the receipt is checked in the store's writer thread."""
        span = next(iter(meta.values()))
        receipt = (result.meta or {}).get(RECEIPT_META_KEY)
        usage = receipt if isinstance(receipt, dict) else {}

        def check_receipt(fields: dict[str, Any]) -> None:
            if not isinstance(receipt, dict):
                return
            server, problem = served_by(result.meta or {}, result, peer.id)
            if problem:
                logger.warning("receipt from %s for %s flagged: %s", peer.name, tool, problem)
            else:  # the ledger credits the peer that served, which a forwarded call's hop records name
                fields["callee"] = server
            fields.update(receipt=json.dumps(receipt), receipt_ok=problem is None, receipt_problem=problem)

        tokens_in, tokens_out = int(usage.get("tokens_in", 0) or 0), int(usage.get("tokens_out", 0) or 0)
        self.node.events.publish(  # the caller's side of the edge, for the TUI's topology and call log
            "call_finished",
            tool=tool,
            trace_id=span["trace_id"],
            span_id=span["span_id"],
            parent=span["parent"],
            caller=self.node.peer_id,
            callee=peer.id,
            ms=round(ms, 2),
            outcome="error" if result.is_error else "ok",
            error=None,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )
        self.node.store.record(
            on_write=check_receipt,
            role="made",
            trace_id=span["trace_id"],
            span_id=span["span_id"],
            parent_span=span["parent"],
            caller=self.node.peer_id,
            callee=peer.id,
            tool=tool,
            started=datetime.fromtimestamp(started, timezone.utc),
            ms=round(ms, 3),
            outcome="error" if result.is_error else "ok",
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )

    # -- choosing peers ----------------------------------------------------
    def is_self(self, name_or_id: str) -> bool:
        return name_or_id in (self.node.peer_id, self.node.name) or (len(name_or_id) >= 4 and self.node.peer_id.startswith(name_or_id))

    def peer(self, name_or_id: str) -> Peer:
        """The peer called `name_or_id` (name, id or id prefix); PeerError if unknown or dead."""
        peer = self.node.peers.find(name_or_id)
        if peer is None:
            known = ", ".join(sorted(f"{p.name} ({p.id})" for p in self.node.peers)) or "none"
            raise PeerError(f"unknown peer {name_or_id!r}; known peers: {known}. See mesh_peers.")
        if peer.status == "dead":
            ago = time.time() - peer.last_seen
            raise PeerError(f"peer {peer.name} ({peer.id}) is unreachable (last seen {ago:.0f} s ago).")
        return peer

    def _targets(self, model: str | None, *, local: bool) -> list[_Target]:
        """Peers able to answer a chat: up, with a model matching `model` (substring, any case)."""

        def fits(models: list[str]) -> bool:
            return bool(models) and (model is None or any(model.lower() in m.lower() for m in models))

        targets: list[_Target] = []
        engine = self.node.engine
        if local and engine is not None and engine.state.value == "ready" and fits([engine.info.name]):
            targets.append(_Target(self.node.peer_id, self.node.name, True, engine.in_flight + engine.queued, 0.0))
        for peer in self.node.peers.up():
            if fits(peer.models) and any(t.name == "chat" for t in peer.card.tools):
                load = self.outstanding[peer.id] + peer.in_flight + peer.queued
                targets.append(_Target(peer.id, peer.name, False, load, peer.latency_ms or 0.0, peer))
        return targets

    @staticmethod
    def _choose(targets: list[_Target]) -> _Target:
        """Power of two choices: sample two, keep the less loaded (ties go local, then faster)."""
        if len(targets) <= 2:
            return min(targets, key=_Target.score)
        return min(random.sample(targets, 2), key=_Target.score)

    async def _ask_once(self, target: _Target, arguments: dict[str, Any], trace: Trace, on_progress: ProgressRelay | None, ctx: ServerRequestContext[Any] | None) -> types.CallToolResult:
        if target.local:
            assert ctx is not None, "the local model is only reachable from inside a request"
            return await self.node.tools.call_local(ctx, "chat", arguments, trace.child_meta(self.node.peer_id, local=True))
        assert target.peer is not None
        return await self.forward(target.peer, "chat", arguments, trace, on_progress)

    async def ask(
        self,
        arguments: dict[str, Any],
        trace: Trace,
        *,
        model: str | None = None,
        peer: str | None = None,
        on_progress: ProgressRelay | None = None,
        ctx: ServerRequestContext[Any] | None = None,
        first: _Target | None = None,
    ) -> AskResult:
        """One chat turn routed to the best able peer, retried once elsewhere if that peer dies.

        `ctx` is the inbound request when there is one: it lets the local model
        serve in-process. Without it (a script's light member) only other peers
        are candidates.
        """
        if peer is not None and self.is_self(peer):
            targets = [t for t in self._targets(None, local=ctx is not None) if t.local]
            tries = 1
        elif peer is not None:
            named = self.peer(peer)
            targets = [_Target(named.id, named.name, False, 0, 0.0, named)]
            tries = 1
        else:
            targets = self._targets(model, local=ctx is not None)
            tries = 2
        if not targets:
            wanted = f"model matching {model!r}" if model else "a model"
            raise PeerError(f"no peer that is up serves {wanted}; see mesh_peers.")
        attempts: list[Attempt] = []
        target = first or self._choose(targets)
        progress = _RisingProgress(on_progress)
        for attempt in range(tries):
            clock = time.perf_counter()
            try:
                result = await self._ask_once(target, arguments, trace, progress, ctx)
            except PeerGone as exc:
                attempts.append(Attempt(peer=target.id, peer_name=target.name, outcome="peer_gone", ms=_ms(clock), error=str(exc)))
                others = [t for t in targets if t.id not in {a.peer for a in attempts}]
                if attempt + 1 >= tries or not others:
                    raise PeerError("; ".join(a.error or "" for a in attempts)) from exc
                failed, target = target, self._choose(others)
                await progress.restart(f"{ANSWER_RESTARTS_PREFIX}peer {failed.name} stopped answering; the answer starts again on {target.name}.\n")
                continue
            attempts.append(Attempt(peer=target.id, peer_name=target.name, outcome="error" if result.is_error else "ok", ms=_ms(clock)))
            if result.is_error:
                raise ToolError(_text(result))
            content = result.structured_content or {}
            return AskResult(
                text=content.get("text", _text(result)),
                peer=target.id,
                peer_name=target.name,
                model=content.get("model"),
                usage=content.get("usage", {}),
                trace_id=trace.trace_id,
                attempts=attempts,
            )
        raise AssertionError("unreachable")

    async def fan_out(self, arguments: dict[str, Any], n: int, trace: Trace, *, model: str | None = None, ctx: ServerRequestContext[Any] | None = None) -> FanOutResult:
        """The same prompt on up to `n` peers at once, spread over distinct peers first."""
        targets = sorted(self._targets(model, local=ctx is not None), key=_Target.score)
        if not targets:
            raise PeerError("no peer that is up serves a model; see mesh_peers.")
        answers: list[AskResult] = []
        failed: list[Attempt] = []

        async def one(target: _Target) -> None:
            clock = time.perf_counter()
            try:
                answers.append(await self.ask(dict(arguments), trace, model=model, ctx=ctx, first=target))
            except (PeerError, ToolError) as exc:
                failed.append(Attempt(peer=target.id, peer_name=target.name, outcome="failed", ms=_ms(clock), error=str(exc)))

        async with anyio.create_task_group() as task_group:
            for index in range(n):
                task_group.start_soon(one, targets[index % len(targets)])
        return FanOutResult(answers=answers, failed=failed, trace_id=trace.trace_id)

    # -- the mesh tools ------------------------------------------------------
    def _build_mesh_server(self) -> MCPServer:
        server: MCPServer = MCPServer("mesh", log_level="WARNING")
        router = self

        def trace_of(ctx: Context) -> Trace:
            """The caller's trace (the tool host already refused loops and hop overruns)."""
            return Trace.from_meta(dict(ctx.request_context.meta or {}))

        def chat_arguments(prompt: str, max_tokens: int, temperature: float) -> dict[str, Any]:
            return {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": temperature}

        @server.tool()
        def mesh_peers() -> list[PeerInfo]:
            """The peers this peer knows: id, name, how reached, status, models, load, latency."""
            return [
                PeerInfo(id=p.id, name=p.name, via=p.via, status=p.status, models=p.models, tools=len(p.card.tools), in_flight=p.in_flight, latency_ms=p.latency_ms, url=p.url)
                for p in router.node.peers
            ]

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
                    chat_arguments(prompt, max_tokens, temperature), trace_of(ctx), model=model, peer=peer, on_progress=request.session.report_progress, ctx=request
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
                return await router.fan_out(chat_arguments(prompt, max_tokens, temperature), n, trace_of(ctx), model=model, ctx=ctx.request_context)
            except PeerError as exc:
                raise ToolError(str(exc)) from exc

        @server.tool()
        async def mesh_call(
            peer: Annotated[str, Field(description="Peer name or id (see mesh_peers).")],
            tool: Annotated[str, Field(description="Tool name on that peer.")],
            ctx: Context,
            arguments: Annotated[dict[str, Any] | None, Field(description="The tool's arguments.")] = None,
        ) -> types.CallToolResult:
            """Call any tool on a named peer; its result (or error) comes back unchanged."""
            trace = trace_of(ctx)
            try:
                if router.is_self(peer):
                    return await router.node.tools.call_local(ctx.request_context, tool, arguments or {}, trace.child_meta(router.node.peer_id, local=True))
                target = router.peer(peer)
                return await router.forward(target, tool, arguments or {}, trace, ctx.request_context.session.report_progress)
            except PeerError as exc:
                raise ToolError(str(exc)) from exc

        return server


def _text(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def _ms(clock: float) -> float:
    return round((time.perf_counter() - clock) * 1000, 1)
