"""`serve --model BIG.gguf --split auto|N`: the model split over lenders found in the mesh, kept running when one goes.

`MeshSplitEngine` is the engine helper's `SplitEngine` (the model in a child
process, layers on ggml RPC endpoints) placed by the mesh: once entered it
waits for lenders in the peer table (`SPLIT_FIND_SECONDS` at most), asks the
planner, opens a `LenderTunnel` per chosen lender and loads with the tunnels'
loopback endpoints. When the child ends because a lender went away, the call
in progress fails with `LenderLost` naming the lender (its name and id, not a
loopback port), and the engine plans again without the lenders that no
longer answer, then reloads; calls meanwhile get "still loading, retry".
The peer itself never dies with a lender: only the child does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from federation.card import LayerShare
from federation.const import SPLIT_FIND_SECONDS
from federation.peers import Peer, PeerTable
from federation.pooled.planner import Headroom, Offer, Placement, PlanError, plan_split
from federation.pooled.tunnel import LenderTunnel, TunnelRefused
from federation.proof import Tokens
from federation.urls import base_url
from servers.gguf_file import GGUFInfo, read_gguf_info
from servers.llama_engine import EngineState, ModelUnavailable, TokenCallback
from servers.split_engine import LenderLost, SplitEngine

__all__ = ["MODEL_TOOLS", "MeshSplitEngine"]

logger = logging.getLogger(__name__)

MODEL_TOOLS = frozenset({"generate", "chat", "embed"})
"""The model server's tools that run the model: each call of one is credited to the lenders too."""

_UNPLACED = [("127.0.0.1:1", 1)]
"""What `SplitEngine` is built with before the mesh is asked: never loaded, replaced by the first plan."""

_REPLAN_BACKOFF_SECONDS = (0.5, 30.0)
_DIRECT = ("static", "mdns")
"""Routes a tunnel can take: a lender reachable only through a relay is not used (yet)."""


_BATCH = 512
"""llama-cpp-python's n_batch: the tokens one step computes, so the rows of the logits buffer."""


def _headroom(info: GGUFInfo, n_ctx: int) -> Headroom:
    """llama.cpp's working memory on a lender, from the GGUF header.

    Measured on Gemma 3 270M, n_ctx 512 (llama.cpp's log): a lender's KV cache
    is 0.5 MiB a layer (f16 K and V), its compute buffer 16-19 MiB (estimated
    here as 22), and the lender placed last also holds the output weights
    (167 MiB) and the logits buffer (513 MiB: batch x vocabulary x 4 bytes).
    """
    arch = info.architecture

    def dim(key: str, default: int = 0) -> int:
        value = info.metadata.get(f"{arch}.{key}")
        return value if isinstance(value, int) else default

    n_embd, heads = dim("embedding_length"), dim("attention.head_count", 1)
    key = dim("attention.key_length", n_embd // max(1, heads))
    batch = min(n_ctx, _BATCH)
    sizes = info.tensor_bytes()
    vocab = info.shapes.get("token_embd.weight", (0, 0))[-1]
    return Headroom(
        per_layer=n_ctx * dim("attention.head_count_kv", heads) * (key + dim("attention.value_length", key)) * 2,
        per_lender=batch * 4 * (3 * dim("feed_forward_length") + 4 * n_embd + heads * n_ctx),
        output=sizes.get("output.weight", sizes.get("token_embd.weight", 0)) + batch * vocab * 4,
    )


def _offers(peers: PeerTable, self_id: str) -> list[Offer]:
    """Every lender in the table that this peer reaches directly, as the planner weighs it."""
    return [
        Offer(
            peer_id=peer.id,
            name=peer.name,
            lend_bytes=peer.card.lend.bytes,
            latency_ms=peer.latency_ms,
            load=peer.in_flight + peer.queued,
            busy=peer.card.lend.host not in (None, self_id),
            up=peer.status == "up",
        )
        for peer in peers
        if peer.card.lend is not None and any(via in peer.routes for via in _DIRECT)
    ]


class MeshSplitEngine(SplitEngine):
    """A `SplitEngine` whose placement comes from the mesh: `lenders` (None: every usable one) from `peers`.

    `tokens` mint the peer token each tunnel carries (None outside a mesh with a secret: a loopback-only mesh).
    """

    def __init__(self, path: str | Path, *, lenders: int | None, peers: PeerTable, self_id: str, tokens: Tokens | None, **options: Any) -> None:
        super().__init__(path, _UNPLACED, **options)
        self._lenders = lenders
        self._peers = peers
        self._self_id = self_id
        self._tokens = tokens
        info = read_gguf_info(path)
        self._layer_bytes = info.layer_bytes()
        self._headroom = _headroom(info, self.n_ctx)
        self._tunnels: dict[str, tuple[LenderTunnel, anyio.CancelScope]] = {}
        self._by_endpoint: dict[str, Peer] = {}
        self._replanning = False
        self._attempt = 0
        self.plan: Placement | None = None

    async def __aenter__(self) -> MeshSplitEngine:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._first_placement)
        return self

    # -- placing -------------------------------------------------------------
    async def _first_placement(self) -> None:
        """Wait for lenders enough (discovery admits them after the peer starts), then load."""
        problem = "no lender seen yet"
        with anyio.move_on_after(SPLIT_FIND_SECONDS):
            while True:
                try:
                    placement = await self._placement()
                except PlanError as exc:
                    problem = str(exc)
                    await anyio.sleep(0.25)
                    continue
                self.placement, self.n_gpu_layers = placement, sum(n for _, n in placement)
                waiting = self._ready  # `wait_ready()` callers hold this one; the child start makes a new one
                self._start_child()
                await self._ready.wait()
                waiting.set()
                return
        self._fail(f"cannot split {self.info.name} over the mesh within {SPLIT_FIND_SECONDS:g} s: {problem}")

    async def _placement(self) -> list[tuple[str, int]]:
        """Plan, open (or keep) a tunnel per chosen lender and probe it, planning again without any that does not
        answer (gone, or busy though its card said free); the (endpoint, layers) list to load with."""
        silent: set[str] = set()
        while True:
            plan = plan_split(self._layer_bytes, _offers(self._peers, self._self_id), lenders=self._lenders, excluded=silent, headroom=self._headroom)
            if not plan.lenders:
                raise PlanError("no lender has room for a layer of this model")
            tunnels = [(await self._tunnel(peer_id), layers) for peer_id, layers in plan.lenders]
            refused = {peer_id for (peer_id, _), (tunnel, _) in zip(plan.lenders, tunnels, strict=True) if not await _answers(tunnel)}
            if not refused:
                break
            silent |= refused
        for peer_id in set(self._tunnels) - {peer_id for peer_id, _ in plan.lenders}:
            self._tunnels.pop(peer_id)[1].cancel()
        if silent:
            logger.info("splitting %s without lenders that did not answer: %s", self.info.name, ", ".join(p.name for p in self._by_endpoint.values() if p.id in silent))
        self.plan = plan
        return [(tunnel.endpoint, layers) for tunnel, layers in tunnels]

    async def _tunnel(self, peer_id: str) -> LenderTunnel:
        if peer_id in self._tunnels:
            return self._tunnels[peer_id][0]
        peer = self._peers.get(peer_id)
        assert peer is not None, "the planner chose a peer of the table"
        assert self._task_group is not None
        tunnel: LenderTunnel
        tunnel, scope = await self._task_group.start(self._keep_tunnel, peer)
        self._tunnels[peer_id] = (tunnel, scope)
        self._by_endpoint[tunnel.endpoint] = peer
        return tunnel

    async def _keep_tunnel(self, peer: Peer, *, task_status: TaskStatus[tuple[LenderTunnel, anyio.CancelScope]]) -> None:
        """One lender's tunnel, open until its scope is cancelled (a new plan without it) or the engine stops."""
        url = next(peer.routes[via] for via in _DIRECT if via in peer.routes)
        tokens = self._tokens
        headers = (lambda: tokens.headers(peer.id)) if tokens else dict
        with anyio.CancelScope() as scope:
            async with LenderTunnel(base_url(url), headers, name=peer.name) as tunnel:
                task_status.started((tunnel, scope))
                await anyio.sleep_forever()

    async def _run_child(self, placement: list[tuple[str, int]]) -> None:
        await super()._run_child(placement)
        if self.state is EngineState.FAILED and not self._replanning and self._task_group is not None:
            self._task_group.start_soon(self._replan)

    async def _replan(self) -> None:
        """Plan again without the lenders that no longer answer, and reload; retried with backoff until one fits."""
        self._replanning = True
        try:
            while self.state is not EngineState.CLOSED:
                first, most = _REPLAN_BACKOFF_SECONDS
                await anyio.sleep(min(most, first * 2**self._attempt))
                self._attempt += 1
                try:
                    placement = await self._placement()
                except PlanError as exc:
                    self._fail(f"{self.info.name} lost a lender and cannot be split again yet: {exc}")
                    continue
                logger.info("re-placing %s: %s", self.info.name, self.plan)
                try:
                    await self.replace(placement)
                except ModelUnavailable:
                    continue
                self._attempt = 0
                return
        finally:
            self._replanning = False

    # -- what callers and people see ---------------------------------------------
    def _named(self, text: str) -> str:
        """`text` with each tunnel endpoint replaced by the lender behind it (a loopback port means nothing to a user)."""
        for endpoint, peer in self._by_endpoint.items():
            text = text.replace(endpoint, f"{peer.name} ({peer.id[:8]})")
        return text

    def _fail(self, message: str) -> None:
        super()._fail(self._named(message))

    async def _call(self, op: str, args: dict[str, Any], on_token: TokenCallback | None) -> Any:
        try:
            return await super()._call(op, args, on_token)
        except LenderLost as exc:
            names = [self._named(endpoint) for endpoint in exc.endpoints]
            if not names:
                raise
            message = (
                f"lender {', '.join(names)} went away while holding layers of {self.info.name}: "
                "this peer is splitting the model again without it; retry in a moment."
            )
            raise LenderLost(message, exc.endpoints) from None

    def describe(self) -> dict[str, Any]:
        """`SplitEngine.describe`, each lent share naming its lender (name and id) instead of a loopback port."""
        described = super().describe()
        for entry in described.get("placement", []):
            if (peer := self._by_endpoint.get(entry["endpoint"])) is not None:
                entry |= {"lender": peer.name, "peer_id": peer.id}
        return described

    def split(self, host: str) -> list[LayerShare]:
        """The card's view of the placement: `host`'s own layers, then each lender's."""
        lent = [LayerShare(peer=peer.name, id=peer.id, layers=layers) for endpoint, layers in self.placement if (peer := self._by_endpoint.get(endpoint))]
        return [LayerShare(peer=host, layers=max(0, self.offloadable_layers - self.n_gpu_layers)), *lent]

    def lender_shares(self) -> list[tuple[str, float]]:
        """(lender id, fraction of the model's layers it holds) for the placement loaded now: what the ledger credits."""
        total = self.offloadable_layers or 1
        return [(peer.id, layers / total) for endpoint, layers in self.placement if (peer := self._by_endpoint.get(endpoint)) is not None]


async def _answers(tunnel: LenderTunnel) -> bool:
    try:
        await tunnel.probe()
    except TunnelRefused:
        return False
    return True

