"""One MCP face for everything a peer offers.

A peer hosts several tool sources behind one `/mcp` endpoint: its model
server, shared stdio servers, demo servers and (later) the mesh's tools. Each
source is a `ToolProvider`; the host merges their tool lists, sends each call
to the provider that owns the name, and around every call publishes
`call_started`/`call_finished` events and queues a ledger row, so no provider
has to know about either.

Hosted `MCPServer`s are called in-process with the caller's own request
context, so their progress notifications, cancellation and questions to the
user (elicitation) reach the caller as if the server were alone. A question
goes out as the caller's era has it: mid-call as `elicitation/create`
(2025-11-25), waiting no longer than the caller's deadline, or as an
`input_required` result (2026-07-28) whose `requestState` this host seals
(the SDK's `RequestStateBoundary`, as a standalone `MCPServer` would) and
which the caller's retry, with the answers, resumes. Such a round is
recorded with the outcome `input_required`, without a receipt: only the
round that answers is a served call.

When the peer stops, `calls.stop(reason)` ends every call in flight and
refuses new ones: each caller gets `reason` as a tool error (and the ledger a
row), where cutting the HTTP server short would leave it with a stream that
ends without a response.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import anyio
import mcp.types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.elicitation import CancelledElicitation, ElicitationResult, ElicitSchemaModelT
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from federation.announce import ListChanges
from federation.const import TRACE_META_KEY
from federation.identity import Identity
from federation.logrelay import stamped
from federation.receipt import RECEIPT_META_KEY, add_hop, sign_receipt
from federation.trace import DEFAULT_MAX_HOPS, LoopError, Trace

__all__ = ["CallOutcome", "CallsInFlight", "ClaimingProvider", "HostedServer", "ToolAnswer", "ToolHost", "ToolProvider", "error_result", "input_params", "settle"]

logger = logging.getLogger(__name__)


def error_result(message: str) -> types.CallToolResult:
    """A tool error the caller (often a model) can read."""
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


ToolAnswer = types.CallToolResult | types.InputRequiredResult
"""What a tool call answers: its result, or (2026-07-28) a round asking the client for input first."""


class ToolProvider(Protocol):
    """A source of tools behind the peer's MCP face."""

    async def list_tools(self) -> list[types.Tool]: ...

    async def call_tool(self, ctx: ServerRequestContext[Any], name: str, arguments: dict[str, Any]) -> ToolAnswer: ...


@runtime_checkable
class ClaimingProvider(ToolProvider, Protocol):
    """A provider that also answers for names it no longer lists (a dead peer's tools), to say why they fail."""

    def claims(self, name: str) -> bool: ...


class HostedServer:
    """An `MCPServer` hosted in-process, called with the caller's request context."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server

    async def list_tools(self) -> list[types.Tool]:
        return await self.server.list_tools()

    async def call_tool(self, ctx: ServerRequestContext[Any], name: str, arguments: dict[str, Any]) -> ToolAnswer:
        context = _HostedContext(request_context=stamped(ctx), mcp_server=self.server, input_params=input_params(ctx))  # type: ignore[call-arg]  # Context's own __init__, which mypy's pydantic plugin hides in a subclass; its log messages carry the call's span
        try:
            result = await self.server.call_tool(name, arguments, context)
        except UnexpectedToolError as exc:
            logger.exception("tool %s crashed", name)
            return error_result(f"tool {name} failed unexpectedly: {exc.__cause__!r}")
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):  # the caller's arguments are wrong, not the tool
                tool = next((t for t in await self.list_tools() if t.name == name), None)
                return error_result(argument_problem(name, tool.input_schema if tool else {}, exc.__cause__))
            if isinstance(exc.__cause__, ToolError):  # the tool's own words, without the SDK's "Error executing tool X: "
                return error_result(str(exc.__cause__))
            return error_result(str(exc))
        return result


def input_params(ctx: ServerRequestContext[Any]) -> types.InputResponseRequestParams:
    """The answers a retried call carries (2026-07-28): `inputResponses` and `requestState` of the request's params."""
    params = ctx.params or {}
    return types.InputResponseRequestParams.model_validate({k: params[k] for k in ("inputResponses", "requestState") if k in params})


class _HostedContext(Context[Any, Any]):
    """A hosted tool's context whose mid-call question (2025-11-25 `elicitation/create`) waits no longer than the caller's deadline.

    A user who never answers must not hold the tool, and the caller, forever:
    at the deadline the question is withdrawn and the tool sees it cancelled.
    """

    async def elicit(self, message: str, schema: type[ElicitSchemaModelT]) -> ElicitationResult[ElicitSchemaModelT]:
        with anyio.move_on_after(Trace.from_meta(dict(self.request_context.meta or {})).remaining_s()):
            return await super().elicit(message, schema)
        logger.info("the user did not answer %r within the caller's deadline", message)
        return CancelledElicitation()


def _label(provider: ToolProvider) -> str:
    """A tool source as users named it: `--share NAME` for a shared stdio server, else its server's name."""
    if hasattr(provider, "command"):  # servers.share.SharedStdioServer
        return f"--share {getattr(provider, 'name', '?')}"
    server = getattr(provider, "server", None)
    return f"server {getattr(server, 'name', None) or type(provider).__name__!r}"


def argument_problem(tool: str, schema: dict[str, Any], exc: ValidationError) -> str:
    """Pydantic's report on a tool's arguments as one sentence, e.g. "generate: missing required argument 'prompt' (string)."

    Every client (a model above all) should read what to fix, not pydantic's
    "1 validation error for generateArguments … visit https://errors.pydantic.dev/…".
    """
    properties = schema.get("properties", {})
    problems = []
    for error in exc.errors():
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
        kind = properties.get(str(error["loc"][0]), {}).get("type") if error["loc"] else None
        if error["type"] == "missing":
            problems.append(f"missing required argument {where!r}" + (f" ({kind})" if kind else ""))
            continue
        given = repr(error["input"])
        given = given if len(given) <= 60 else given[:57] + "..."
        message = error["msg"][:1].lower() + error["msg"][1:]
        problems.append(f"argument {where!r}={given} is invalid: {message}")
    return f"{tool}: {'; '.join(problems)}."


@dataclass
class CallOutcome:
    """What the host observed about one call, handed to its observer."""

    tool: str
    arguments: dict[str, Any]
    trace: Trace
    started: float
    ms: float = 0.0
    outcome: str = "ok"
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    result: types.CallToolResult | None = field(default=None, repr=False)


def settle(outcome: CallOutcome, result: ToolAnswer) -> None:
    """Fill in how a call ended from its result: outcome, error text, tokens from `usage`."""
    if isinstance(result, types.InputRequiredResult):  # a round that asks the client first: not an answer
        outcome.outcome = "input_required"
        return
    outcome.result = result
    if result.is_error:
        outcome.outcome = "error"
        outcome.error = "".join(c.text for c in result.content if isinstance(c, types.TextContent))[:500]
    usage = result.structured_content.get("usage") if isinstance(result.structured_content, dict) else None
    if isinstance(usage, dict):
        outcome.tokens_in = int(usage.get("prompt_tokens", 0))
        outcome.tokens_out = int(usage.get("completion_tokens", 0))


class CallsInFlight:
    """The calls a peer is serving, each in a cancel scope, so that stopping can answer them (see the module docstring)."""

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()
        self._none_left = anyio.Event()
        self.refusal: str | None = None
        """Once stopping: what every call still in flight, or arriving, is answered."""

    @contextmanager
    def track(self) -> Iterator[anyio.CancelScope]:
        """Run one call in a scope that `stop` cancels; after the block, `scope.cancelled_caught` means "answer `refusal`"."""
        with anyio.CancelScope() as scope:
            if self.refusal is not None:
                scope.cancel()
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)
                if not self._scopes:
                    self._none_left.set()

    async def stop(self, refusal: str, *, grace: float) -> None:
        """Cancel every call in flight, refuse new ones, and wait up to `grace` seconds for the answers to go out."""
        self.refusal = refusal
        if not self._scopes:
            return
        for scope in list(self._scopes):
            scope.cancel()
        with anyio.move_on_after(grace):
            await self._none_left.wait()


CallObserver = Callable[[CallOutcome, bool], None]
"""Called with (outcome, finished): once when a call starts, once when it ends."""


class ToolHost:
    """Merges providers into one low-level MCP `Server` (`.server`)."""

    def __init__(
        self,
        name: str,
        *,
        version: str,
        instructions: str,
        identity: Identity,
        observer: CallObserver | None = None,
        max_hops: int = DEFAULT_MAX_HOPS,
    ) -> None:
        self._identity = identity
        self._max_hops = max_hops
        self._providers: list[ToolProvider] = []
        self._local: set[int] = set()
        self._owners: dict[str, ToolProvider] = {}
        self._tools: list[types.Tool] = []
        self._announced: list[str] = []  # tool names as clients were last told
        self._hidden_warned: set[tuple[int, int, tuple[str, ...]]] = set()  # clashes already reported (see _warn_hidden)
        self._schemas: dict[str, dict[str, Any]] = {}
        self._observer = observer
        self.calls = CallsInFlight()
        self.changes = ListChanges()
        """The clients told when the tools (or, see `federation.content`, prompts or resources) change."""
        self.server: Server[Any] = Server(
            name,
            version=version,
            instructions=instructions,
            on_list_tools=self._on_list_tools,
            on_call_tool=self._on_call_tool,
            get_tool_input_schema=self._input_schema,
            on_subscriptions_listen=self.changes.listen,
        )
        # Process-local key: a round's state comes back to the peer that minted it.
        self._state_boundary = RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=name)
        self.server.middleware.append(self._seal_local_state)

    async def add_provider(self, provider: ToolProvider, *, local: bool = True) -> None:
        """Add a tool source; `local=False` marks mesh tools, which the peer card does not advertise."""
        self._providers.append(provider)
        if local:
            self._local.add(id(provider))
        await self.refresh()

    async def refresh(self, *, announce: bool = True) -> None:
        """Rebuild the merged tool list; the first provider to claim a name keeps it.

        Clients hear `tools/list_changed` only when the names differ from what
        they were last told, and not while `announce` is False (a provider in
        the middle of a burst of changes: it refreshes again with True at the end).
        """
        owners: dict[str, ToolProvider] = {}
        tools: list[types.Tool] = []
        hidden: dict[tuple[int, int], list[str]] = {}
        for provider in self._providers:
            try:
                offered = await provider.list_tools()
            except Exception:  # one broken provider must not hide the others
                logger.exception("a tool provider failed to list its tools")
                continue
            for tool in offered:
                if tool.name not in owners:
                    owners[tool.name] = provider
                    tools.append(tool)
                else:
                    hidden.setdefault((id(provider), id(owners[tool.name])), []).append(tool.name)
        self._warn_hidden(hidden)
        self._owners, self._tools = owners, tools
        self._schemas = {t.name: t.input_schema for t in tools}
        names = [t.name for t in tools]
        if announce and names != self._announced:
            self._announced = names
            await self.changes.announce("tools")

    def _warn_hidden(self, hidden: dict[tuple[int, int], list[str]]) -> None:
        """Say on stderr (once per clash) which tools are not offered because another source claimed the name first.

        `--share a=X --share b=X` used to drop b's tools without a word.
        """
        providers = {id(p): p for p in self._providers}
        for (loser, winner), names in hidden.items():
            clash = (loser, winner, tuple(names))
            if clash in self._hidden_warned:
                continue
            self._hidden_warned.add(clash)
            logger.warning(
                "%s offers %s, which %s already offers: the first to offer a name keeps it, so %s's are not offered. "
                "Share each server once, or give one of them a server whose tools are named differently.",
                _label(providers[loser]), ", ".join(names), _label(providers[winner]), _label(providers[loser]),
            )

    async def _seal_local_state(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Seal the `requestState` of this peer's own tools (as a standalone `MCPServer` does); pass other peers' on untouched.

        A remote tool's state was sealed by the peer that serves it, which alone can open it.
        """
        name = (ctx.params or {}).get("name") if ctx.method == "tools/call" else None
        provider = self._owners.get(name) if isinstance(name, str) else None
        if provider is not None and id(provider) in self._local:
            return await self._state_boundary(ctx, call_next)
        return await call_next(ctx)

    def _input_schema(self, name: str) -> dict[str, Any] | None:
        """For the SDK's Mcp-Param header check; without it the SDK re-lists every tool on every call."""
        return self._schemas.get(name)

    @property
    def tools(self) -> list[types.Tool]:
        return list(self._tools)

    @property
    def local_tools(self) -> list[types.Tool]:
        """This peer's own tools (models, shared servers), without the mesh's."""
        return [t for t in self._tools if id(self._owners[t.name]) in self._local]

    async def call_local(self, ctx: ServerRequestContext[Any], name: str, arguments: dict[str, Any], meta: dict[str, Any]) -> ToolAnswer:
        """Serve one of this peer's own tools in-process, recorded and receipted like a remote call."""
        return await self._serve(ctx, name, arguments, meta, only_local=True)

    async def _on_list_tools(self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        self.changes.remember(ctx)
        return types.ListToolsResult(tools=self._tools)

    async def _on_call_tool(self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> ToolAnswer:
        return await self._serve(ctx, params.name, params.arguments or {}, dict(ctx.meta or {}), only_local=False)

    async def _serve(
        self, ctx: ServerRequestContext[Any], name: str, arguments: dict[str, Any], meta: dict[str, Any], *, only_local: bool
    ) -> ToolAnswer:
        outcome = CallOutcome(tool=name, arguments=arguments, trace=Trace.from_meta(meta), started=time.time())
        if not isinstance(meta.get(TRACE_META_KEY), dict):  # a client's call starts a trace here: the provider must see this one, not mint another
            ctx = replace(ctx, meta={**meta, **outcome.trace.as_meta()})  # type: ignore[arg-type]
        try:  # the loop guard: a call that comes back to a peer it passed, or hops too far, stops here
            outcome.trace.check(self._identity.peer_id, self._max_hops)
        except LoopError as exc:
            return self._finish(outcome, error_result(str(exc)))
        provider = self._owners.get(name) or self._claimant(name)
        if provider is None or (only_local and id(provider) not in self._local):
            offered = ", ".join(sorted(self._owners)) or "(none)"
            return self._finish(outcome, error_result(f"Unknown tool: {name!r}. This peer offers: {offered}."))
        self._notify(outcome, finished=False)
        clock = time.perf_counter()
        with self.calls.track() as stopping:
            try:
                result = await provider.call_tool(ctx, name, arguments)
            except BaseException as exc:
                if not (stopping.cancel_called and isinstance(exc, anyio.get_cancelled_exc_class())):  # a stop is answered below
                    outcome.ms = (time.perf_counter() - clock) * 1000
                    # a JSON-RPC error (e.g. a question the client cannot answer) is an error with its message
                    outcome.outcome, outcome.error = ("error", exc.error.message) if isinstance(exc, MCPError) else ("cancelled", "the caller cancelled or the call failed")
                    self._notify(outcome, finished=True)
                raise
        outcome.ms = (time.perf_counter() - clock) * 1000
        if stopping.cancelled_caught:
            return self._finish(outcome, error_result(self.calls.refusal or "this peer is shutting down."))
        return self._finish(outcome, result)

    def _claimant(self, name: str) -> ToolProvider | None:
        """The provider answering for an unlisted `name`, if any (see `ClaimingProvider`)."""
        return next((p for p in self._providers if isinstance(p, ClaimingProvider) and p.claims(name)), None)

    def _finish(self, outcome: CallOutcome, result: ToolAnswer) -> ToolAnswer:
        settle(outcome, result)
        if isinstance(result, types.InputRequiredResult):  # nothing served yet: no receipt
            self._notify(outcome, finished=True)
            return result
        meta, trace = dict(result.meta or {}), outcome.trace
        forwarded = meta.get(RECEIPT_META_KEY)
        if isinstance(forwarded, dict) and forwarded.get("peer") != self._identity.peer_id:
            # Served elsewhere and passed through here: the server's receipt stays, this peer adds its hop.
            meta = add_hop(self._identity, meta, trace_id=trace.trace_id, span_id=trace.span_id, tool=outcome.tool)
        else:
            meta[RECEIPT_META_KEY] = sign_receipt(
                self._identity,
                trace_id=trace.trace_id,
                span_id=trace.span_id,
                tool=outcome.tool,
                tokens_in=outcome.tokens_in,
                tokens_out=outcome.tokens_out,
                result=result,
            )
        result = result.model_copy(update={"meta": meta})
        outcome.result = result
        self._notify(outcome, finished=True)
        return result

    def _notify(self, outcome: CallOutcome, *, finished: bool) -> None:
        if self._observer is not None:
            self._observer(outcome, finished)

