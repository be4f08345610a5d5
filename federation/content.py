"""The peer's resources, resource templates and prompts, on the same MCP face as its tools.

What a peer offers besides tools comes from *sources*, each an SDK `Client`:
its own servers in-process (the notes as `ai://<peer>/<path>`, the peer card
as `ai://<peer>/` itself, the model's prompts), each `--share` child (its
resources as `ai://<peer>/@<share>/<the child's uri>`, its prompts as they
are), and the mesh (`federation.routing.content`: other peers' offers, their
URIs unchanged and their prompts named `<peer>__<prompt>`). Everything here
speaks Markdown where it can: the AI:// idea, pages for language models.

An offer carries its route (`_meta[ROUTE_META_KEY]`: the ids of the peers it
passed, owner first), so peers pass on what they learned without ever taking
back their own offers: the same URI reached two ways is served by the
shorter route, and a loop cannot form.

`resources/read`, `prompts/get` and `completion/complete` go to the source
that offers the URI, template or name; a URI that no resource lists goes to
the source whose template's fixed prefix matches it (the longest). Lists are
paginated (`page_size`, the cursor is an offset), and clients hear
`notifications/{resources,prompts}/list_changed` (or the 2026 era's
`subscriptions/listen` event) whenever what is offered changes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar, cast

import anyio
import mcp.types as types
from anyio.abc import TaskStatus
from mcp import Client
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

from federation.identity import Identity
from federation.toolhost import ToolHost
from federation.trace import DEFAULT_MAX_HOPS, LoopError, Trace
from federation.wellknown import SERVER_CARD_URI

__all__ = ["PAGE_SIZE", "ROUTE_META_KEY", "ContentHost", "Listed", "Offer", "Source", "card_resource", "list_everything", "peer_base"]

logger = logging.getLogger(__name__)

ROUTE_META_KEY = "io.mcp-federation/route"
PAGE_SIZE = 100
"""Items per page of `resources/list`, `resources/templates/list` and `prompts/list`."""

MARKDOWN = "text/markdown"
_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
Kind = Literal["resource", "template", "prompt"]
Item = types.Resource | types.ResourceTemplate | types.Prompt
_Answer = TypeVar("_Answer")


def peer_base(name: str) -> str:
    """`ai://<peer>/`: the peer card itself, and the prefix of every resource the peer owns."""
    return f"ai://{name}/"


def card_resource(name: str) -> types.Resource:
    """How `ai://<peer>/`, the peer's card, is listed: by the peer itself, and by peers that hold its card and so need not ask it."""
    return types.Resource(
        uri=peer_base(name), name="peer", title=f"Peer {name}", description="This peer's signed card, for people and models.", mime_type=MARKDOWN
    )


def _offers_content(offers: list[Offer]) -> bool:
    """Whether `offers` hold anything but peer cards: what a peer's signed card says (`PeerCard.content`).

    Every peer offers its own card, `ai://<peer>/` and `mcp://server-card.json`
    (which every peer offers as its own, so another's is never seen), and
    passes on others' `ai://<peer>/`: counting those would make every peer in
    a mesh of two "offer content", and every peer follow every other (N² MCP
    sessions) to learn nothing its cards do not say.
    """
    return any(o.kind != "resource" or not _is_card_uri(o.key) for o in offers)


def _is_card_uri(uri: str) -> bool:
    rest = uri.removeprefix("ai://")
    return uri == SERVER_CARD_URI or (rest != uri and rest.endswith("/") and rest.count("/") == 1)


class Source(Protocol):
    """Where offers are served: an open SDK session, or MCPError saying why there is none."""

    label: str

    async def client(self) -> Client: ...


@dataclass(frozen=True)
class Offer:
    """One resource, template or prompt as this peer offers it (`item`, keyed by `key`), and where it is served."""

    kind: Kind
    key: str
    there: str
    """The uri, template or name at the source."""
    item: Item
    source: Source
    hops: int = 1


@dataclass
class Listed:
    """Everything one source lists, all pages."""

    resources: list[types.Resource]
    templates: list[types.ResourceTemplate]
    prompts: list[types.Prompt]


async def list_everything(client: Client) -> Listed:
    """Every page of a source's three lists (none for a list it does not serve), fresh from the source."""

    async def pages(method: str, field: str) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        while True:
            try:
                page = await getattr(client, method)(cursor=cursor, cache_mode="bypass")
            except MCPError as exc:
                if exc.error.code == types.METHOD_NOT_FOUND:
                    return items
                raise
            items.extend(getattr(page, field))
            cursor = page.next_cursor
            if not cursor:
                return items

    return Listed(
        await pages("list_resources", "resources"), await pages("list_resource_templates", "resource_templates"), await pages("list_prompts", "prompts")
    )


def route_of(item: Item) -> list[str] | None:
    route = (item.meta or {}).get(ROUTE_META_KEY)
    return [str(hop) for hop in route] if isinstance(route, list) else None


def offer(kind: Kind, item: Item, source: Source, *, key: str, route: list[str]) -> Offer:
    """`item` offered here as `key`, stamped with its `route`."""
    there = _key(kind, item)
    field = {"resource": "uri", "template": "uri_template", "prompt": "name"}[kind]
    shown = item.model_copy(update={field: key, "meta": {**(item.meta or {}), ROUTE_META_KEY: route}})
    return Offer(kind, key, there, shown, source, len(route))


def _key(kind: Kind, item: Item) -> str:
    if kind == "resource":
        return cast(types.Resource, item).uri
    if kind == "template":
        return cast(types.ResourceTemplate, item).uri_template
    return cast(types.Prompt, item).name


def offers_of(listed: Listed, source: Source, *, uri: Callable[[str], str], name: Callable[[str, list[str]], str], route: Callable[[Item], list[str] | None]) -> list[Offer]:
    """A source's listing as offers: URIs and names as this peer shows them, routes as `route` extends them (None: not taken)."""
    offers: list[Offer] = []
    for kind, items in (("resource", listed.resources), ("template", listed.templates), ("prompt", listed.prompts)):
        for item in items:
            new_route = route(item)
            if new_route is None:
                continue
            there = _key(kind, item)  # type: ignore[arg-type]
            key = name(there, new_route) if kind == "prompt" else uri(there)
            offers.append(offer(kind, item, source, key=key, route=new_route))  # type: ignore[arg-type]
    return offers


class _HeldClient:
    """An in-process SDK session with one of the peer's own servers."""

    def __init__(self, label: str, session: Client) -> None:
        self.label = label
        self._session = session

    async def client(self) -> Client:
        return self._session


class _Share:
    """A `--share` child's session, while it runs."""

    def __init__(self, share: Any) -> None:
        self.label = f"shared server {share.name!r}"
        self._share = share

    async def client(self) -> Client:
        session: Client | None = await self._share.connection()
        if session is None:
            raise MCPError(types.INTERNAL_ERROR, f"{self.label} is not running: {self._share.error or 'it is restarting'}; try again.")
        return session


async def _hold(server: MCPServer, *, task_status: TaskStatus[Client]) -> None:
    """Keep an in-process session with `server` open until cancelled (a session is closed by the task that opened it)."""
    async with Client(server, cache=None) as session:
        task_status.started(session)
        await anyio.sleep_forever()


def _card_server(name: str, card_markdown: Callable[[], str]) -> MCPServer:
    server = MCPServer("card", version="0.1.0", log_level="WARNING")
    listed = card_resource(name)

    @server.resource(listed.uri, name=listed.name, title=listed.title, description=listed.description, mime_type=listed.mime_type)
    def card() -> str:
        return card_markdown()

    return server


class ContentHost:
    """Resources, templates and prompts on the tool host's MCP server (`async with` runs the in-process sessions)."""

    def __init__(
        self, tools: ToolHost, *, name: str, identity: Identity, card_markdown: Callable[[], str], max_hops: int = DEFAULT_MAX_HOPS, page_size: int = PAGE_SIZE
    ) -> None:
        self.name = name
        self.base = peer_base(name)
        self._peer_id = identity.peer_id
        self._max_hops = max_hops
        self.page_size = page_size
        self._changes = tools.changes
        self._card = _card_server(name, card_markdown)
        self._local: list[tuple[Source, Callable[[str], str]]] = []  # (source, its URI as offered here)
        self._local_offers: list[Offer] = []
        self._mesh_offers: list[Offer] = []
        self._offers: dict[Kind, dict[str, Offer]] = {"resource": {}, "template": {}, "prompt": {}}
        self.offers_content = False
        """Whether it offers anything but peer cards (its card says so: `PeerCard.content`); kept up to date by every change."""
        self._stack = AsyncExitStack()
        self._task_group: anyio.abc.TaskGroup | None = None
        server = tools.server
        server.add_request_handler("resources/list", types.PaginatedRequestParams, self._on_list_resources)
        server.add_request_handler("resources/templates/list", types.PaginatedRequestParams, self._on_list_templates)
        server.add_request_handler("resources/read", types.ReadResourceRequestParams, self._on_read)
        server.add_request_handler("prompts/list", types.PaginatedRequestParams, self._on_list_prompts)
        server.add_request_handler("prompts/get", types.GetPromptRequestParams, self._on_get_prompt)
        server.add_request_handler("completion/complete", types.CompleteRequestParams, self._on_complete)

    async def __aenter__(self) -> ContentHost:
        self._task_group = await self._stack.enter_async_context(anyio.create_task_group())
        await self.add_server(self._card)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        await self._stack.aclose()

    # -- sources -----------------------------------------------------------
    async def add_server(self, server: MCPServer) -> None:
        """One of the peer's own servers: its resources and prompts offered as they are."""
        assert self._task_group is not None, "the content host is not running"
        session = await self._task_group.start(_hold, server)
        self._local.append((_HeldClient(f"server {server.name!r}", session), lambda uri: uri))
        await self.refresh()

    async def add_share(self, share: Any) -> None:
        """A `--share` child (`servers.share.SharedStdioServer`): its URIs under `ai://<peer>/@<share>/`."""
        prefix = f"{self.base}@{share.name}/"
        self._local.append((_Share(share), lambda uri: prefix + uri))
        await self.refresh()

    async def refresh(self) -> None:
        """List the peer's own sources again (a share said its lists changed) and tell clients what changed."""
        offers: list[Offer] = []
        for source, shown in self._local:
            try:
                listed = await list_everything(await source.client())
            except Exception as exc:  # noqa: BLE001 - one source down must not hide the others
                logger.info("could not list the resources and prompts of %s: %s", source.label, exc)
                continue
            offers += offers_of(listed, source, uri=shown, name=lambda name, route: name, route=lambda item: [self._peer_id])
        self._local_offers = offers
        await self._publish()

    async def set_mesh(self, offers: list[Offer]) -> None:
        """Other peers' offers (`federation.routing.content`), replacing the last set."""
        self._mesh_offers = offers
        await self._publish()

    async def _publish(self) -> None:
        merged: dict[Kind, dict[str, Offer]] = {"resource": {}, "template": {}, "prompt": {}}
        for item in [*self._local_offers, *sorted(self._mesh_offers, key=lambda o: o.hops)]:
            merged[item.kind].setdefault(item.key, item)  # own first, then the shortest route
        self.offers_content = _offers_content([*self._local_offers, *self._mesh_offers])
        before, self._offers = self._offers, merged
        if merged["resource"].keys() != before["resource"].keys() or merged["template"].keys() != before["template"].keys():
            await self._changes.announce("resources")
        if merged["prompt"].keys() != before["prompt"].keys():
            await self._changes.announce("prompts")

    def offers(self, kind: Kind) -> list[Offer]:
        return list(self._offers[kind].values())

    # -- handlers ------------------------------------------------------------
    def _page(self, ctx: ServerRequestContext[Any], kind: Kind, params: types.PaginatedRequestParams | None) -> tuple[list[Any], str | None]:
        self._changes.remember(ctx)
        cursor = params.cursor if params else None
        start = int(cursor) if cursor and cursor.isdigit() else 0
        if cursor and not cursor.isdigit():
            raise MCPError(types.INVALID_PARAMS, f"cursor {cursor!r} is not one this peer handed out; list again without a cursor.")
        items = [o.item for o in self._offers[kind].values()]
        end = start + self.page_size
        return items[start:end], (str(end) if end < len(items) else None)

    async def _on_list_resources(self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        page, cursor = self._page(ctx, "resource", params)
        return types.ListResourcesResult(resources=page, next_cursor=cursor)

    async def _on_list_templates(self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> types.ListResourceTemplatesResult:
        page, cursor = self._page(ctx, "template", params)
        return types.ListResourceTemplatesResult(resource_templates=page, next_cursor=cursor)

    async def _on_list_prompts(self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        page, cursor = self._page(ctx, "prompt", params)
        return types.ListPromptsResult(prompts=page, next_cursor=cursor)

    def _resolve_uri(self, uri: str) -> tuple[Offer, str] | None:
        """The offer serving `uri` and the URI to ask its source for: a listed resource, else the template with the longest fixed prefix."""
        if (exact := self._offers["resource"].get(uri)) is not None:
            return exact, exact.there
        best: tuple[Offer, str] | None = None
        for template in self._offers["template"].values():
            prefix, there_prefix = template.key.split("{")[0], template.there.split("{")[0]
            if uri.startswith(prefix) and (best is None or len(prefix) > len(best[0].key.split("{")[0])):
                best = template, there_prefix + uri.removeprefix(prefix)
        return best

    async def _on_read(self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        found = self._resolve_uri(uri)
        if found is None:
            raise MCPError(types.INVALID_PARAMS, f"no resource {uri} on this peer or the peers it knows; see resources/list and resources/templates/list.")
        offer_, there = found
        result = await self._forward(ctx, offer_, lambda client, meta: client.read_resource(there, meta=meta, cache_mode="bypass"))
        return result.model_copy(update={"contents": [c.model_copy(update={"uri": uri}) if c.uri == there else c for c in result.contents]})

    async def _on_get_prompt(self, ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams) -> types.GetPromptResult:
        offer_ = self._offers["prompt"].get(params.name)
        if offer_ is None:
            offered = ", ".join(self._offers["prompt"]) or "(none)"
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name!r}. This peer offers: {offered}.")
        return await self._forward(ctx, offer_, lambda client, meta: client.get_prompt(offer_.there, params.arguments, meta=meta))

    async def _on_complete(self, ctx: ServerRequestContext[Any], params: types.CompleteRequestParams) -> types.CompleteResult:
        ref = params.ref
        if isinstance(ref, types.PromptReference):
            offer_ = self._offers["prompt"].get(ref.name)
            there_ref: types.PromptReference | types.ResourceTemplateReference = ref.model_copy(update={"name": offer_.there}) if offer_ else ref
        else:
            offer_ = self._offers["template"].get(ref.uri)
            there_ref = ref.model_copy(update={"uri": offer_.there}) if offer_ else ref
        if offer_ is None:
            return types.CompleteResult(completion=types.Completion(values=[]))
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = params.context.arguments if params.context else None
        return await self._forward(ctx, offer_, lambda client, meta: client.complete(there_ref, argument, context))

    async def _forward(self, ctx: ServerRequestContext[Any], offer_: Offer, ask: Callable[[Client, Any], Awaitable[_Answer]]) -> _Answer:
        """Ask the offer's source, with the trace one hop further (the loop guard); its errors reach the caller as they are."""
        trace = Trace.from_meta(dict(ctx.meta or {}))
        try:
            trace.check(self._peer_id, self._max_hops)
        except LoopError as exc:
            raise MCPError(types.INVALID_REQUEST, str(exc)) from exc
        client = await offer_.source.client()
        answer = await ask(client, trace.child_meta(self._peer_id))
        if isinstance(answer, types.Result) and answer.meta and _SERVER_INFO in answer.meta:  # the source's name stamp: this peer answers
            answer = answer.model_copy(update={"meta": {k: v for k, v in answer.meta.items() if k != _SERVER_INFO} or None})
        return answer
