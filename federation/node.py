"""One running peer: its identity, store, model, MCP face and HTTP server.

```python
async with Node(PeerSettings(port=0)) as node:
    print(node.mcp_url)          # http://127.0.0.1:<port>/mcp
    await node.wait_ready()      # model loaded
```

Routes on one port: `/mcp` (Streamable HTTP MCP), `/peer` (signed card,
JSON), `/peer.md` (the card for people), `/health`, `/mesh/proof` (membership
proof between peers, `federation.proof`), `/peers` (the peer table), `/events`
(Server-Sent Events), `/metrics` (Prometheus), `/models/<sha256>/…` (model chunks for
`mcpfed pull`, `federation.pull.serve`), and the standard documents made from the
card (`/.well-known/mcp/server-card`, `/.well-known/agent-card.json`, `/llms.txt`:
`federation.wellknown`). Every route answers only requests
addressed to this peer (`federation.hostguard.HostGuard`); in a mesh every route but
`/health` and `/mesh/proof` needs the mesh credential or a peer token addressed to
this peer (`federation.membership.MeshGuard`); `/mcp` is rate-limited per caller
(`federation.ratelimit`). Everything the node starts it stops on exit,
in reverse order; the node's lifetime is one task group. The router, discovery
(mDNS, static peers, health pings, the stored peer table) and relay links run
as services chosen from the settings.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import anyio
import uvicorn
from anyio.abc import TaskGroup
from mcp.server.lowlevel import NotificationOptions
from mcp.server.transport_security import TransportSecuritySettings
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from federation.bodylimit import BodyLimit
from federation.callers import mesh_caller
from federation.card import Load, ModelSummary, PeerCard, ToolSummary, card_markdown, sign_card
from federation.const import (
    CARD_MARKDOWN_PATH,
    CARD_PATH,
    EVENTS_PATH,
    HEALTH_PATH,
    MCP_PATH,
    METRICS_PATH,
    PEERS_PATH,
    PROOF_PATH,
    STOP_GRACE_SECONDS,
)
from federation.content import ContentHost, peer_base
from federation.contract import EventModel, Hello
from federation.discovery import HealthMonitor, MdnsDiscovery, health_monitor, mdns_discovery, persist_peers, recall_peers, static_peers
from federation.discovery.admission import Member, discovery_client, fetch_card
from federation.discovery.interfaces import advertised_hosts, plan_mdns
from federation.discovery.persist import Recollection
from federation.discovery.relay import LinkParts, RelayLinks
from federation.discovery.rumours import NEWS_HEADER
from federation.discovery.static import StaticPeers
from federation.errors import ConfigError, ModelFileError, PeerError
from federation.events import EventBus
from federation.fastserve import FastServe
from federation.home import state_dir
from federation.hostguard import HostGuard, machine_names
from federation.identity import Identity
from federation.listen import bind_socket, start_uvicorn
from federation.membership import MeshGuard
from federation.models_store import ModelStore
from federation.peers import Peer, PeerTable
from federation.pooled.host import MODEL_TOOLS, MeshSplitEngine
from federation.pooled.lending import Lending
from federation.proof import MeshKeys, ProofDesk, Tokens
from federation.pull.serve import ChunkServer
from federation.ratelimit import RateLimit
from federation.routing import CallLedger, FastForward, Forwarder, Router
from federation.routing.content import MeshContent
from federation.settings import PeerSettings
from federation.store import Store, database_url
from federation.tls import server_options, trust
from federation.toolhost import CallOutcome, HostedServer, ToolHost
from federation.urls import http_url, mcp_url
from federation.wellknown import Publication
from servers.embedded_models import EmbeddedModelError, model_path
from servers.gguf_file import GGUFError
from servers.llama import build_server as build_llama_server
from servers.llama_engine import LlamaEngine, ModelUnavailable
from servers.notes import NotesFolder
from servers.notes import build_server as build_notes_server
from servers.share import SharedStdioServer

__all__ = ["Node", "SOFTWARE", "ServiceFactory"]

SOFTWARE = "mcp-federation/0.1.0"
logger = logging.getLogger(__name__)

_SSE_HEARTBEAT_SECONDS = 15.0
_SDK_HOST_CHECK_OFF = TransportSecuritySettings(enable_dns_rebinding_protection=False)
"""`HostGuard` checks Host and Origin on every route, `/mcp` included; the SDK's own check would refuse names it allows."""

_S = TypeVar("_S")

ServiceFactory = Callable[["Node"], AbstractAsyncContextManager[Any]]
"""Something that runs for the node's lifetime once it serves HTTP (discovery, relay link, router)."""


class _Metrics:
    """Prometheus metrics of one node (own registry: several nodes share a test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter("mcpfed_calls", "Tool calls served", ["tool", "outcome"], registry=self.registry)
        self.seconds = Histogram("mcpfed_call_seconds", "Tool call duration", ["tool"], registry=self.registry)
        self.tokens = Counter("mcpfed_tokens", "Tokens processed", ["direction"], registry=self.registry)
        self.in_flight = Gauge("mcpfed_in_flight", "Model requests running", registry=self.registry)
        self.queued = Gauge("mcpfed_queued", "Model requests waiting", registry=self.registry)


class Node:
    """A peer; `async with` starts it, exit stops everything it started."""

    def __init__(self, settings: PeerSettings | None = None, *, services: Sequence[ServiceFactory] = ()) -> None:
        self.settings = settings or PeerSettings()
        self._service_factories = [*self._default_services(), *services]
        if problem := self.settings.bind_problem():
            raise ConfigError(problem)
        if self.settings.ca:
            trust(self.settings.ca)
        self.home = state_dir(self.settings.home)
        self.identity = Identity.load_or_create(self.home)
        self._signed: tuple[PeerCard, PeerCard] | None = None  # (unsigned, signed): the card as last signed
        keys = MeshKeys(self.settings.mesh_secret) if self.settings.mesh_secret else None
        self.member = Member(self.identity.peer_id, keys) if keys else None
        """How this peer proves its membership to others (None outside a mesh with a secret)."""
        self._proofs = ProofDesk(keys, self.identity.peer_id, lambda: self.urls, lambda: self.card().model_dump_json().encode()) if keys else None
        self.name = self.settings.name or socket.gethostname().split(".")[0]
        self.events = EventBus()
        self.peers = PeerTable(self.events, self.identity.peer_id)
        self.engine: LlamaEngine | None = self._make_engine()
        self.lending = (
            Lending(mem_bytes=self.settings.lend_bytes(), cache_dir=self.home / "rpc-cache", threads=self.settings.threads, require_proof=keys is not None)
            if self.settings.lend
            else None
        )
        """`--lend`: the ggml RPC server other peers' split models use, behind `LEND_PATH` (federation.pooled)."""
        self.tools = ToolHost(
            self.name,
            version=SOFTWARE,
            instructions=f"mcp-federation peer {self.name} ({self.identity.peer_id}).",
            identity=self.identity,
            observer=self.observe_call,
            max_hops=self.settings.max_hops,
        )
        self.content = ContentHost(self.tools, name=self.name, identity=self.identity, card_markdown=lambda: card_markdown(self.card()), max_hops=self.settings.max_hops)
        """Resources (notes and the card as `ai://<peer>/…`), templates and prompts on the same MCP face."""
        self.store = Store(self.settings.db or database_url(self.home), self.identity)
        self.ledger = CallLedger(store=self.store, events=self.events, peer_id=self.identity.peer_id)
        """Events and ledger rows of every call this peer serves or makes."""
        self.forwarder = Forwarder(peers=self.peers, ledger=self.ledger, identity=self.identity, settings=self.settings)
        """Every call this peer passes on to another peer goes through it (see `federation.routing`)."""
        self.model_store = ModelStore(
            self.home / "models", self.identity, chunk_bytes=self.settings.model_chunk_bytes, extra=lambda: [self.engine.info.path] if self.engine else []
        )
        """The models this peer holds and shares (`/models/…`, `mcpfed pull`); hashed in the background at start."""
        self._chunks = ChunkServer(
            self.model_store, busy=lambda: self.load().in_flight + self.load().queued > 0, rate_mb=self.settings.share_rate, shared=lambda: self.settings.share_models
        )
        self._metrics = _Metrics()
        self._server: uvicorn.Server | None = None
        self.app: ASGIApp | None = None
        """The node's whole ASGI app (mesh guard included); relay links call it in-process."""
        self._task_group: TaskGroup | None = None
        self._stack = AsyncExitStack()
        self.services: list[Any] = []
        self.port = 0
        self.started_at = 0.0
        self.calls_served = 0
        self.shares: list[SharedStdioServer] = []
        self.publication = Publication(
            card=self.card,
            tools=lambda: self.tools.local_tools,
            capabilities=lambda: self.tools.server.get_capabilities(NotificationOptions(tools_changed=True)),
            notes=self._shared_notes,
            relays=self.settings.relays,
            auth_required=bool(self.settings.mesh_secret),
        )
        """The standard documents about this peer (server card, agent card, llms.txt), made from its card."""

    def _make_engine(self) -> LlamaEngine | None:
        choice = self.settings.model
        if choice is None:
            return None
        try:
            path = model_path(choice)
            if self.settings.split is not None:
                tokens = Tokens(self.member.keys, self.peer_id) if self.member else None
                return MeshSplitEngine(
                    path,
                    lenders=self.settings.split_lenders(),
                    peers=self.peers,
                    self_id=self.identity.peer_id,
                    tokens=tokens,
                    n_ctx=self.settings.n_ctx,
                    n_threads=self.settings.threads,
                    queue_limit=self.settings.queue_limit,
                    queue_per_caller=self.settings.queue_per_caller,
                )
            return LlamaEngine(
                path,
                n_ctx=self.settings.n_ctx,
                n_gpu_layers=self.settings.gpu_layers,
                n_threads=self.settings.threads,
                queue_limit=self.settings.queue_limit,
                queue_per_caller=self.settings.queue_per_caller,
            )
        except (GGUFError, EmbeddedModelError) as exc:
            raise ModelFileError(str(exc)) from exc

    # -- lifecycle -------------------------------------------------------
    async def __aenter__(self) -> Node:
        sock = bind_socket(self.settings.host, self.settings.port)
        self.port = sock.getsockname()[1]
        async with AsyncExitStack() as stack:
            stack.callback(sock.close)
            await stack.enter_async_context(self.store)
            await stack.enter_async_context(self.content)
            await self.content.add_server(self.publication.resource_server())
            if self.engine is not None:
                await stack.enter_async_context(self.engine)
                model_server = build_llama_server(self.engine, caller_of=mesh_caller)
                await self.tools.add_provider(HostedServer(model_server))
                await self.content.add_server(model_server)
            await self._host_shared_tools(stack)
            if self.lending is not None:
                await stack.enter_async_context(self.lending)
            await stack.enter_async_context(self.forwarder)
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            if self.settings.share_models:
                self._task_group.start_soon(self.model_store.scan)
                stack.callback(self.model_store.stop)
            stack.callback(self._stop_http)
            await self._start_http(sock)
            for factory in self._service_factories:
                self.services.append(await stack.enter_async_context(factory(self)))
            stack.push_async_callback(self._begin_stop)
            self._stack = stack.pop_all()
        self.started_at = time.time()
        return self

    async def _begin_stop(self) -> None:
        """First steps of a stop: leave the mesh (mDNS goodbye), then answer every caller with "shutting down"
        while the HTTP server still delivers it; the services and the server stop after."""
        for service in self.services:
            if callable(leave := getattr(service, "leave", None)):
                await leave()
        await self.tools.calls.stop(f"peer {self.name} is shutting down; retry on another peer.", grace=STOP_GRACE_SECONDS)
        self.tools.changes.close()

    async def _host_shared_tools(self, stack: AsyncExitStack) -> None:
        """`--notes` and each `--share` child; a child that fails to start offers nothing (see `shares[i].error`)."""
        if self.settings.notes is not None:
            notes = await anyio.to_thread.run_sync(partial(build_notes_server, self.settings.notes, uri_base=peer_base(self.name)))  # it checks the folder on disk
            await self.tools.add_provider(HostedServer(notes))
            await self.content.add_server(notes)
        allowed = self.settings.allowed_tools()
        for share_name, command in self.settings.shares():
            share = SharedStdioServer(share_name, command, on_change=self._share_changed, allow=allowed.get(share_name))
            self.shares.append(await stack.enter_async_context(share))
            await self.tools.add_provider(share)
            await self.content.add_share(share)

    async def _share_changed(self) -> None:
        """A shared child (re)started or said its lists changed: its tools, resources and prompts are listed again."""
        await self.tools.refresh()
        await self.content.refresh()

    async def _shared_notes(self) -> list[str]:
        """The notes `--notes` shares (their relative paths), read in a worker thread."""
        folder = self.settings.notes
        if folder is None:
            return []
        return await anyio.to_thread.run_sync(lambda: NotesFolder(folder).files())

    def _stop_http(self) -> None:
        self.events.close()
        if self._server is not None:
            self._server.should_exit = True

    def _default_services(self) -> list[ServiceFactory]:
        """What every peer runs, in start order (they stop in reverse): the router, discovery, then what the
        settings ask for: static peers, mDNS, relay links. Raises `ConfigError` for a bad `--mdns` here,
        before the node binds anything."""
        settings = self.settings
        return [
            _router,
            _mesh_content,
            _recall_peers,
            _persist_peers,
            _health_monitor,
            *([_static_peers] if settings.peers else []),
            *([_mdns_discovery] if plan_mdns(settings) is not None else []),
            *([_relay_links] if settings.relays else []),
        ]

    async def _start_http(self, sock: socket.socket) -> None:
        app = self.tools.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            transport_security=_SDK_HOST_CHECK_OFF,
            max_request_body_size=self.settings.max_request_bytes,
            custom_starlette_routes=self._routes(),
        )
        served_here = FastServe(app, server=self.tools.server, max_request_bytes=self.settings.max_request_bytes, mcp_path=MCP_PATH)
        fast_forward = FastForward(
            served_here,
            forwarder=self.forwarder,
            resolve=self._remote_tool,
            identity=self.identity,
            calls=self.tools.calls,
            observe=self.observe_call,
            max_request_bytes=self.settings.max_request_bytes,
            mcp_path=MCP_PATH,
        )
        within_mesh = BodyLimit(fast_forward, limit=self.settings.max_request_bytes, path=MCP_PATH)
        limited = RateLimit(within_mesh, rate=self.settings.rate(), path=MCP_PATH)
        members = MeshGuard(
            limited,
            secret=self.settings.mesh_secret,
            mesh_name=self.settings.mesh_name,
            open_paths=[HEALTH_PATH, PROOF_PATH],
            audience=lambda scope: self.peer_id,
        )
        self.app = HostGuard(members, names=[*machine_names(self.settings.host), *self.settings.public_name(), *self.settings.allowed_hosts])
        assert self._task_group is not None
        self._server = await start_uvicorn(
            self._task_group, self.app, sock, limits=self.settings.connection_limits(), **server_options(self.settings.tls_cert, self.settings.tls_key)
        )

    def _remote_tool(self, name: str) -> tuple[str, str] | None:
        """(peer id, tool) behind a `<peer>__<tool>` name, once the router runs."""
        try:
            return self.service(Router).catalog.remote_tool(name)
        except LookupError:
            return None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Answer the calls in flight, leave the mesh (mDNS goodbye), stop serving, free the model, flush the store."""
        await self._stack.aclose()

    def service(self, kind: type[_S]) -> _S:
        """The running service of that class (e.g. `node.service(Router)`)."""
        for service in self.services:
            if isinstance(service, kind):
                return service
        raise LookupError(f"this node runs no {kind.__name__}")

    async def add_peer(self, url: str) -> Peer:
        """Fetch, verify and admit the peer at `url` now (as `--peer URL` does, once); PeerError if it can't be."""
        async with discovery_client() as http:
            card = await fetch_card(http, url, mesh=self.settings.mesh, member=self.member)
        peer = self.peers.admit(card, "static", mcp_url(url))
        if peer is None:
            raise PeerError(f"{url} is this peer itself")
        return peer

    async def wait_ready(self) -> None:
        """Wait until the model (if any) is loaded; `ModelFileError` if llama.cpp could not load it."""
        if self.engine is not None:
            try:
                await self.engine.wait_ready()
            except ModelUnavailable as exc:
                raise ModelFileError(str(exc)) from exc

    # -- addresses -------------------------------------------------------
    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    @property
    def urls(self) -> list[str]:
        """Every base URL this peer is reached at: `--public-url` first, then one per machine address when bound to 0.0.0.0.

        In a container the machine's addresses are the bridge network's, which
        nobody outside reaches: `--public-url` names the published port.
        """
        bound = [http_url(host, self.port, scheme=self.settings.scheme) for host in advertised_hosts(self.settings.host)]
        return [self.settings.public_url, *bound] if self.settings.public_url else bound

    @property
    def url(self) -> str:
        """The base URL to print and hand out: the bound address, or for 0.0.0.0 the first LAN one."""
        return self.urls[0]

    @property
    def mcp_url(self) -> str:
        return self.url + MCP_PATH

    # -- card --------------------------------------------------------------
    def load(self) -> Load:
        if self.engine is None:
            return Load()
        return Load(in_flight=self.engine.in_flight, queued=self.engine.queued)

    def card(self) -> PeerCard:
        """The signed card, signed again only when what it says changed: every card fetch and proof asks for it
        (while 100 peers meet, ~100 times each), and signing was most of serving one. `issued_at` is when it last changed."""
        unsigned = self._unsigned_card()
        if self._signed is None or self._signed[0] != unsigned:
            self._signed = (unsigned, sign_card(unsigned, self.identity))
        return self._signed[1]

    def _unsigned_card(self) -> PeerCard:
        """The card before signing: enough for its digest, which `/health` names at every ping."""
        models = []
        if self.engine is not None:
            info = self.engine.info
            models.append(
                ModelSummary(
                    name=info.name,
                    architecture=info.architecture,
                    quantization=info.quantization,
                    size_bytes=info.size,
                    sha256=self.engine.sha256,
                    n_ctx=self.engine.n_ctx,
                    n_gpu_layers=self.engine.n_gpu_layers,
                    split=self.engine.split(self.name) if isinstance(self.engine, MeshSplitEngine) and self.engine.plan else None,
                )
            )
        return PeerCard(
            id=self.peer_id,
            name=self.name,
            pubkey="",
            mesh=self.settings.mesh,
            software=SOFTWARE,
            endpoints=[url + MCP_PATH for url in self.urls],
            models=models,
            tools=[ToolSummary(name=t.name, description=t.description or "") for t in self.tools.local_tools],
            load=self.load(),
            shares=self.model_store.shared() if self.settings.share_models else [],
            lend=self.lending.offer() if self.lending else None,
            content=self.content.offers_content,
        )

    # -- calls -------------------------------------------------------------
    def observe_call(self, call: CallOutcome, finished: bool) -> None:
        """Metrics, events and a ledger row for a call this peer served."""
        if not finished:
            self.ledger.served_started(call)
            return
        self.calls_served += 1
        self._metrics.calls.labels(call.tool, call.outcome).inc()
        self._metrics.seconds.labels(call.tool).observe(call.ms / 1000)
        self._metrics.tokens.labels("in").inc(call.tokens_in)
        self._metrics.tokens.labels("out").inc(call.tokens_out)
        self.ledger.served(call)
        if isinstance(self.engine, MeshSplitEngine) and call.tool in MODEL_TOOLS:
            self.ledger.lent(call, self.engine.lender_shares())

    # -- HTTP routes -------------------------------------------------------
    def _routes(self) -> list[Route]:
        proof = [Route(PROOF_PATH, self._proofs.endpoint, methods=["POST"])] if self._proofs else []
        return [
            *proof,
            Route(CARD_PATH, self._get_card, methods=["GET"]),
            Route(CARD_MARKDOWN_PATH, self._get_card_markdown, methods=["GET"]),
            Route(HEALTH_PATH, self._get_health, methods=["GET"]),
            Route(PEERS_PATH, self._get_peers, methods=["GET"]),
            Route(EVENTS_PATH, self._get_events, methods=["GET"]),
            Route(METRICS_PATH, self._get_metrics, methods=["GET"]),
            *self.publication.routes(),
            *self._chunks.routes(),
            *(self.lending.routes() if self.lending else []),
        ]

    async def _get_card(self, request: Request) -> Response:
        return Response(self.card().model_dump_json(), media_type="application/json")

    async def _get_card_markdown(self, request: Request) -> Response:
        return PlainTextResponse(card_markdown(self.card()), media_type="text/markdown")

    def health(self) -> dict[str, Any]:
        load = self.load()
        model_state = self.engine.state.value if self.engine is not None else "none"
        return {
            "ok": model_state in ("ready", "none"),
            "id": self.peer_id,
            "name": self.name,
            "model": model_state,
            "error": self.engine.error if self.engine is not None else None,
            "in_flight": load.in_flight,
            "queued": load.queued,
            "calls_served": self.calls_served,
            "uptime_s": round(time.time() - self.started_at, 1) if self.started_at else 0.0,
            "cd": self._unsigned_card().digest(),  # a pinger holding an older card fetches it again (discovery/health.py)
        }

    async def _get_health(self, request: Request) -> Response:
        """`health()`, plus liveness news both ways (discovery/rumours.py) and the pings sent so far (bench.scale)."""
        body = self.health()
        for monitor in (s for s in self.services if isinstance(s, HealthMonitor)):
            monitor.hear(request.headers.get(NEWS_HEADER, ""))
            body["news"], body["pings"] = monitor.news(), monitor.pings
        return JSONResponse(body)

    async def _get_peers(self, request: Request) -> Response:
        return JSONResponse({"self": self.peer_id, "peers": [row.model_dump(mode="json") for row in self.peers.snapshot()]})

    async def _get_metrics(self, request: Request) -> Response:
        load = self.load()
        self._metrics.in_flight.set(load.in_flight)
        self._metrics.queued.set(load.queued)
        return Response(generate_latest(self._metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def _get_events(self, request: Request) -> Response:
        return StreamingResponse(self._event_stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def _event_stream(self) -> AsyncIterator[str]:
        """SSE: a `hello` with the card, then every event; a comment line as heartbeat."""
        async with self.events.subscribe() as events:
            yield _sse(0, Hello(card=self.card()))
            while True:
                with anyio.move_on_after(_SSE_HEARTBEAT_SECONDS) as waited:
                    event = await anext(events, None)
                if waited.cancelled_caught:
                    yield ": heartbeat\n\n"
                elif event is None:  # the bus closed: the node is stopping
                    return
                else:
                    yield _sse(event.seq, event.payload)


def _router(node: Node) -> Router:
    """The router, handed the parts of the node it uses."""
    return Router(
        peer_id=node.peer_id, name=node.name, peers=node.peers, events=node.events, forwarder=node.forwarder, tools=node.tools, engine=node.engine
    )


def _mesh_content(node: Node) -> MeshContent:
    """Other peers' resources, templates and prompts, learned over the forwarder's session pool."""
    router = node.service(Router)
    catalog = router.catalog
    return MeshContent(
        peer_id=node.peer_id, peers=node.peers, follower=router.follower, sessions=node.forwarder.sessions, host=node.content, on_tools_changed=partial(catalog.learn, listed_changed=True)
    )


def _recall_peers(node: Node) -> AbstractAsyncContextManager[Recollection]:
    """The stored table read back, handed the store, the peer table and what admitting a peer takes."""
    return recall_peers(store=node.store, peer_id=node.peer_id, peers=node.peers, mesh=node.settings.mesh, member=node.member)


def _persist_peers(node: Node) -> AbstractAsyncContextManager[None]:
    """The store's copy of the peer table, handed the store, the table and the events that change it."""
    return persist_peers(store=node.store, peer_id=node.peer_id, peers=node.peers, events=node.events)


def _mdns_discovery(node: Node) -> AbstractAsyncContextManager[MdnsDiscovery | None]:
    """mDNS per `--mdns`, handed the node's name, id, port and card, and what admitting a peer takes."""
    return mdns_discovery(
        plan_mdns(node.settings),
        name=node.name,
        peer_id=node.peer_id,
        port=node.port,
        card=node.card,
        mesh=node.settings.mesh,
        member=node.member,
        peers=node.peers,
    )


def _health_monitor(node: Node) -> AbstractAsyncContextManager[HealthMonitor]:
    """Health pings, handed the peer table, the interval, and what fetching a changed card takes."""
    return health_monitor(node.peers, self_id=node.peer_id, interval=node.settings.health_interval, mesh=node.settings.mesh, member=node.member)


def _static_peers(node: Node) -> AbstractAsyncContextManager[StaticPeers]:
    """`--peer` URLs, handed the parts of the node they use."""
    settings = node.settings
    return static_peers(settings.peers, name=node.name, peer_id=node.peer_id, mesh=settings.mesh, member=node.member, peers=node.peers)


def _relay_links(node: Node) -> RelayLinks:
    """Relay links, handed the peer table and what a link uses of the node (its app, card, addresses, proof)."""
    assert node.app is not None, "relay links start after the node's HTTP app"
    settings = node.settings
    parts = LinkParts(
        identity=node.identity,
        member=node.member,
        app=node.app,
        card=node.card,
        url=lambda: node.url,
        mesh=settings.mesh,
        max_request_bytes=settings.max_request_bytes,
    )
    return RelayLinks(settings.relays, peers=node.peers, parts=parts)


def _sse(seq: int, payload: EventModel) -> str:
    """One SSE message: the event's kind, its sequence number, its model as JSON."""
    return f"id: {seq}\nevent: {payload.kind}\ndata: {payload.model_dump_json()}\n\n"
