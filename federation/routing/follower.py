"""One follower of the peer events per node, feeding every part that learns what other peers offer.

The router's catalog (tools) and the mesh content (resources, prompts) each
followed `peer_up`/`peer_changed`/`peer_down` on their own, and learned a
peer again at every such event: twice the subscriptions, and on a loaded
machine, where peers flap suspect -> up, every flap cost every peer a round
of MCP requests to every flapping peer. Here a peer is learned when it is
new, when its card's digest changed (its tools, models, endpoints, or
whether it offers content), or when it comes back after a `peer_down`; a
suspect peer answering again and a new route to the same card are no news.
What changes between those moments reaches the learners over the peer's
`subscriptions/listen` stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from federation.events import EventBus, Subscription
from federation.peers import PeerTable

__all__ = ["PeerFollower"]

Learn = Callable[[str], None]
"""Starts learning a peer's offers, in the learning part's own task group (so it stops with that part)."""
Forget = Callable[[str], Awaitable[None]]


class PeerFollower:
    """A service (`async with`): calls each `learn` for a peer with news, each `forget` for a peer that went down."""

    def __init__(self, events: EventBus, peers: PeerTable) -> None:
        self._events = events
        self._peers = peers
        self._parts: list[tuple[Learn, Forget]] = []
        self._learned: dict[str, str] = {}  # peer id -> the card digest its offers were learned at
        self._task_group: TaskGroup | None = None

    def add(self, learn: Learn, forget: Forget) -> None:
        """Feed a part from now on (it learns the peers already up itself, when it starts)."""
        self._parts.append((learn, forget))

    async def __aenter__(self) -> PeerFollower:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._follow, self._events.subscribe("peer_up", "peer_changed", "peer_down"))
        for peer in self._peers.up():
            self._learn(peer.id)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(exc_type, exc, tb)

    def _learn(self, peer_id: str) -> None:
        peer = self._peers.get(peer_id)
        if peer is None or self._learned.get(peer_id) == (digest := peer.card.digest()):
            return
        self._learned[peer_id] = digest
        for learn, _ in self._parts:
            learn(peer_id)

    async def _follow(self, subscription: Subscription) -> None:
        async with subscription as events:
            async for event in events:
                peer_id = event.data.get("id")
                if not peer_id:
                    continue
                if event.kind == "peer_down":
                    self._learned.pop(peer_id, None)
                    for _, forget in self._parts:
                        await forget(peer_id)
                else:
                    self._learn(peer_id)
