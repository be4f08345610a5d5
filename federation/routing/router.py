"""The router: the mesh's tools on every peer, as one tool provider of the tool host.

Every peer's `/mcp` offers `mesh_peers`, `mesh_ask`, `mesh_call`,
`mesh_fan_out` (`federation.routing.mesh_tools`) and each other peer's own
tools as `<peer>__<tool>` (`federation.routing.catalog`). Calls to other
peers go through the peer's forwarder (`federation.routing.forwarder`).
The router is handed the parts it uses (peer table, event bus, forwarder,
tool host, the local model), not the whole `Node`, so it can be built and
tested alone.

`mesh_ask` without `peer` picks its peer with `federation.routing.choose`; a
capability call whose peer dies mid-call is retried once on another able peer
(the progress stream says so), and so is one whose peer refuses it as busy
(its model's queue is full, `servers.fair_queue`); a call to a named peer
reports either.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import mcp.types as types
from anyio.abc import TaskGroup
from mcp.server import ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError

from federation.const import ANSWER_RESTARTS_PREFIX
from federation.errors import PeerError
from federation.events import EventBus
from federation.logrelay import relay_to
from federation.peers import Peer, PeerTable
from federation.routing.catalog import Catalog
from federation.routing.choose import Target, choose, fits, next_target, ranked
from federation.routing.elicitation import carry_input
from federation.routing.follower import PeerFollower
from federation.routing.forwarder import Forwarder
from federation.routing.mesh_tools import AskResult, Attempt, FanOutResult, build_mesh_server
from federation.routing.search import SEARCH_TOOL, Sharer
from federation.routing.sessions import PeerGone
from federation.routing.transports import ProgressRelay
from federation.toolhost import HostedServer, ToolAnswer, ToolHost, error_result, input_params
from federation.trace import Trace
from servers.fair_queue import BUSY_PREFIX, MODEL_LOST_PREFIX

if TYPE_CHECKING:
    from servers.llama_engine import LlamaEngine

__all__ = ["Router"]


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


class Router:
    """The mesh's tool provider on one peer; a service (`async with Router(...)`) built from the parts it uses.

    `peer_id` and `name` are this peer's; `engine` is its own model, if any
    (a candidate for `mesh_ask` when the call comes in a request); `tools` is
    the tool host it joins as a provider and serves local calls through.
    """

    def __init__(
        self, *, peer_id: str, name: str, peers: PeerTable, events: EventBus, forwarder: Forwarder, tools: ToolHost, engine: LlamaEngine | None = None
    ) -> None:
        self._peer_id, self._name = peer_id, name
        self._peers = peers
        self._events = events
        self._tools = tools
        self._engine = engine
        self.forwarder = forwarder
        self.catalog = Catalog(peers, forwarder.sessions, lambda announce: tools.refresh(announce=announce))
        self.follower = PeerFollower(events, peers)
        """The node's one follower of peer events; the mesh content joins it too (`federation.routing.follower`)."""
        self.follower.add(self._learn, self.catalog.peer_down)
        self._task_group: TaskGroup | None = None
        self._mesh_tools = HostedServer(build_mesh_server(self))

    # -- lifecycle -------------------------------------------------------
    async def __aenter__(self) -> Router:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        await self._tools.add_provider(self, local=False)
        await self._task_group.start(self._run_follower)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(exc_type, exc, tb)

    def _learn(self, peer_id: str) -> None:
        assert self._task_group is not None
        self._task_group.start_soon(self.catalog.learn, peer_id)

    async def _run_follower(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with self.follower:
            task_status.started()
            await anyio.sleep_forever()

    def settled(self) -> bool:
        """Every peer that is up has had its tools listed (or failed to), and no listing is running."""
        return self.catalog.settled()

    # -- ToolProvider ------------------------------------------------------
    async def list_tools(self) -> list[types.Tool]:
        return [*(await self._mesh_tools.list_tools()), *self.catalog.exposed]

    def claims(self, name: str) -> bool:
        """Answers for `name` though it is not listed: a dead peer's tool, so the call can say why it fails."""
        return self.catalog.remote_tool(name) is not None

    async def call_tool(self, ctx: ServerRequestContext[Any], name: str, arguments: dict[str, Any]) -> ToolAnswer:
        remote = self.catalog.remote_tool(name)
        if remote is None:
            return await self._mesh_tools.call_tool(ctx, name, arguments)
        peer_id, tool = remote
        trace = Trace.from_meta(dict(ctx.meta or {}))
        try:
            return await self._call_remote(ctx, self.forwarder.peer(peer_id), tool, arguments, trace, input_params(ctx), exposed=name)
        except PeerError as exc:
            return error_result(str(exc))

    async def _call_remote(
        self, ctx: ServerRequestContext[Any], peer: Peer, tool: str, arguments: dict[str, Any], trace: Trace, answers: types.InputResponseRequestParams, *, exposed: str
    ) -> ToolAnswer:
        """`tool` on `peer`, its questions for the user (if any) carried to this call's caller (`federation.routing.elicitation`)."""

        async def send(with_answers: types.InputResponseRequestParams) -> ToolAnswer:
            return await self.forwarder.call(peer, tool, arguments, trace, ctx.session.report_progress, with_answers, relay_to(ctx))

        return await carry_input(ctx, await send(answers), send, trace, tool=exposed)

    # -- what the mesh tools ask (federation.routing.mesh_tools.MeshRouting) --
    def known_peers(self) -> Iterable[Peer]:
        return self._peers

    def is_self(self, name_or_id: str) -> bool:
        return name_or_id in (self._peer_id, self._name) or (len(name_or_id) >= 4 and self._peer_id.startswith(name_or_id))

    async def call_peer(
        self, ctx: ServerRequestContext[Any], peer: str, tool: str, arguments: dict[str, Any], trace: Trace, answers: types.InputResponseRequestParams
    ) -> ToolAnswer:
        """`tool` on the named peer (this one served in-process); PeerError if it is unknown or gone.

        `answers`: what the caller's retry carries after an `input_required` round.
        """
        if self.is_self(peer):
            return await self._tools.call_local(ctx, tool, arguments, trace.child_meta(self._peer_id, local=True))
        return await self._call_remote(ctx, self.forwarder.peer(peer), tool, arguments, trace, answers, exposed=f"{tool} on {peer}")

    def note_sharers(self) -> list[Sharer]:
        """Peers whose `search_notes` `mesh_search` asks: this one if it shares notes, and every peer up whose card offers it."""
        own = [Sharer(self._peer_id, self._name)] if any(t.name == SEARCH_TOOL for t in self._tools.local_tools) else []
        return own + [Sharer(p.id, p.name) for p in self._peers.up() if any(t.name == SEARCH_TOOL for t in p.card.tools)]

    def _targets(self, model: str | None, *, local: bool) -> list[Target]:
        """Peers able to answer a chat: up, with a model matching `model` (substring, any case)."""
        targets: list[Target] = []
        engine = self._engine
        if local and engine is not None and engine.state.value == "ready" and fits(model, [engine.info.name]):
            targets.append(Target(self._peer_id, self._name, True, engine.in_flight + engine.queued, 0.0))
        for peer in self._peers.up():
            if fits(model, peer.models) and any(t.name == "chat" for t in peer.card.tools):
                load = self.forwarder.outstanding[peer.id] + peer.in_flight + peer.queued
                targets.append(Target(peer.id, peer.name, False, load, peer.latency_ms or 0.0, peer))
        return targets

    async def _ask_once(self, target: Target, arguments: dict[str, Any], trace: Trace, on_progress: ProgressRelay | None, ctx: ServerRequestContext[Any] | None) -> types.CallToolResult:
        if target.local:
            assert ctx is not None, "the local model is only reachable from inside a request"
            result = await self._tools.call_local(ctx, "chat", arguments, trace.child_meta(self._peer_id, local=True))
        else:
            assert target.peer is not None
            result = await self.forwarder.call(target.peer, "chat", arguments, trace, on_progress)
        if not isinstance(result, types.CallToolResult):  # chat asks the user nothing
            return error_result(f"chat on {target.name} asked for input from the user, which mesh_ask cannot give")
        return result

    async def ask(
        self,
        arguments: dict[str, Any],
        trace: Trace,
        *,
        model: str | None = None,
        peer: str | None = None,
        on_progress: ProgressRelay | None = None,
        ctx: ServerRequestContext[Any] | None = None,
        first: Target | None = None,
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
            named = self.forwarder.peer(peer)
            targets = [Target(named.id, named.name, False, 0, 0.0, named)]
            tries = 1
        else:
            targets = self._targets(model, local=ctx is not None)
            tries = 2
        if not targets:
            wanted = f"model matching {model!r}" if model else "a model"
            raise PeerError(f"no peer that is up serves {wanted}; see mesh_peers.")
        attempts: list[Attempt] = []
        target = first or choose(targets)
        progress = _RisingProgress(on_progress)
        for attempt in range(tries):
            clock = time.perf_counter()
            try:
                result = await self._ask_once(target, arguments, trace, progress, ctx)
            except PeerGone as exc:
                attempts.append(Attempt(peer=target.id, peer_name=target.name, outcome="peer_gone", ms=_ms(clock), error=str(exc)))
                following = next_target(targets, {a.peer for a in attempts})
                if attempt + 1 >= tries or following is None:
                    raise PeerError("; ".join(a.error or "" for a in attempts)) from exc
                failed, target = target, following
                await progress.restart(f"{ANSWER_RESTARTS_PREFIX}peer {failed.name} stopped answering; the answer starts again on {target.name}.\n")
                continue
            failure = _text(result) if result.is_error else ""
            busy = failure.startswith(BUSY_PREFIX)  # its model's queue is full: nothing ran there
            lost = failure.startswith(MODEL_LOST_PREFIX)  # its model failed mid-answer (a split model's lender went away)
            outcome = "busy" if busy else "model_lost" if lost else "error" if result.is_error else "ok"
            attempts.append(Attempt(peer=target.id, peer_name=target.name, outcome=outcome, ms=_ms(clock), error=failure if busy or lost else None))
            following = next_target(targets, {a.peer for a in attempts}) if (busy or lost) and attempt + 1 < tries else None
            if following is not None:
                if lost:
                    await progress.restart(f"{ANSWER_RESTARTS_PREFIX}the model on {target.name} failed mid-answer; the answer starts again on {following.name}.\n")
                target = following
                continue
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
        targets = ranked(self._targets(model, local=ctx is not None))
        if not targets:
            raise PeerError("no peer that is up serves a model; see mesh_peers.")
        answers: list[AskResult] = []
        failed: list[Attempt] = []

        async def one(target: Target) -> None:
            clock = time.perf_counter()
            try:
                answers.append(await self.ask(dict(arguments), trace, model=model, ctx=ctx, first=target))
            except (PeerError, ToolError) as exc:
                failed.append(Attempt(peer=target.id, peer_name=target.name, outcome="failed", ms=_ms(clock), error=str(exc)))

        async with anyio.create_task_group() as task_group:
            for index in range(n):
                task_group.start_soon(one, targets[index % len(targets)])
        return FanOutResult(answers=answers, failed=failed, trace_id=trace.trace_id)


def _text(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def _ms(clock: float) -> float:
    return round((time.perf_counter() - clock) * 1000, 1)
