"""Other peers' resources, templates and prompts, learned over the session pool and offered on this peer.

Each peer that comes up (or changes) has its three lists read over its
pooled SDK session; a `subscriptions/listen` stream on that session then
says when they change, and they are read again. A peer whose signed card
says it offers nothing but peer cards (a light peer) is not asked: only its
card `ai://<peer>/` is offered, from the card held. What a peer learned from its
own peers it passes on, so a resource two hops away is offered too: an
offer's route (`federation.content.ROUTE_META_KEY`) names the peers it
passed, and a peer takes nothing whose route already holds it, so nothing
loops back. URIs travel unchanged (`ai://<owner>/…` names its owner); a
peer's own prompts are offered as `<peer>__<prompt>`, like its tools, and
keep that name further on. Reads, prompt gets and completions are forwarded
by `federation.content.ContentHost` to the peer an offer came from.

The same stream carries the peer's `tools/list_changed`, handed to
`on_tools_changed` (the router's catalog lists the peer's tools again), so a
tool added two peers away reaches this peer's clients too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio
import mcp.types as types
from anyio.abc import TaskGroup
from mcp import Client
from mcp.client.subscriptions import ListenNotSupportedError
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ToolsListChanged

from federation.content import ContentHost, Item, Listed, Offer, card_resource, list_everything, offers_of, route_of
from federation.peers import Peer, PeerTable
from federation.routing.catalog import namespaced
from federation.routing.follower import PeerFollower
from federation.routing.sessions import SessionPool, root_cause

__all__ = ["MeshContent"]

logger = logging.getLogger(__name__)

_LIST_SECONDS = 5.0


class _PeerSource:
    """A peer's pooled session, borrowed per request."""

    def __init__(self, peers: PeerTable, sessions: SessionPool, peer_id: str) -> None:
        self._peers = peers
        self._sessions = sessions
        self.peer_id = peer_id
        peer = peers.get(peer_id)
        self.label = f"peer {peer.name if peer else '?'} ({peer_id})"

    async def client(self) -> Client:
        peer = self._peers.get(self.peer_id)
        if peer is None or peer.status == "dead":
            raise MCPError(types.INTERNAL_ERROR, f"{self.label} is unreachable; see mesh_peers.")
        try:
            return await self._sessions.client(peer)
        except Exception as exc:
            raise MCPError(types.INTERNAL_ERROR, f"{self.label} is unreachable ({root_cause(exc)}); see mesh_peers.") from exc


class MeshContent:
    """The mesh's offers on one peer; a service (`async with MeshContent(...)`) built from the parts it uses."""

    def __init__(
        self, *, peer_id: str, peers: PeerTable, follower: PeerFollower, sessions: SessionPool, host: ContentHost, on_tools_changed: Callable[[str], Awaitable[None]]
    ) -> None:
        self._peer_id = peer_id
        self._on_tools_changed = on_tools_changed
        self._peers = peers
        follower.add(self._learn, self._forget)
        self._sessions = sessions
        self._host = host
        self._by_peer: dict[str, list[Offer]] = {}
        self._watching: set[str] = set()
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> MeshContent:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        for peer in self._peers.up():
            self._task_group.start_soon(self.learn, peer.id)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._task_group is not None
        task_group, self._task_group = self._task_group, None  # the follower's news finds nothing to start from now on
        task_group.cancel_scope.cancel()
        await task_group.__aexit__(exc_type, exc, tb)

    def _learn(self, peer_id: str) -> None:
        if self._task_group is not None:  # news that comes before this service starts is covered by its first look
            self._task_group.start_soon(self.learn, peer_id)

    async def _forget(self, peer_id: str) -> None:
        if self._by_peer.pop(peer_id, None) is not None:
            await self._publish()

    async def learn(self, peer_id: str) -> None:
        """Read a peer's lists and follow their changes (once per session with it).

        A peer whose signed card says it offers nothing but peer cards
        (`PeerCard.content` False: a light peer) is not asked: its own card,
        `ai://<peer>/`, is offered from the card held, and no session is
        opened. In a mesh of light peers that spares every peer a session and
        a `listen` stream with every other (N² of each). When it gains
        something its card changes and the follower brings it here again.
        """
        if peer_id in self._watching:
            await self._read(peer_id)
            return
        peer = self._peers.get(peer_id)
        if peer is not None and peer.card.content is False:
            await self._offer(peer, Listed([card_resource(peer.name)], [], []))
            return
        self._watching.add(peer_id)
        try:
            await self._follow(peer_id)
        finally:
            self._watching.discard(peer_id)

    async def _follow(self, peer_id: str) -> None:
        """Listen first, then read, then read again at each change: no change falls between the read and the listen."""
        source = _PeerSource(self._peers, self._sessions, peer_id)
        try:
            client = await source.client()
            async with client.listen(tools_list_changed=True, prompts_list_changed=True, resources_list_changed=True) as changes:
                await self._read(peer_id)
                async for change in changes:
                    await (self._on_tools_changed(peer_id) if isinstance(change, ToolsListChanged) else self._read(peer_id))
        except ListenNotSupportedError:  # a handshake-era peer: read once
            await self._read(peer_id)
        except Exception as exc:  # noqa: BLE001 - a lost session ends the watch; the next learn starts another
            logger.info("stopped following the resources and prompts of %s: %s", source.label, root_cause(exc))

    async def _read(self, peer_id: str) -> None:
        """Read a peer's three lists and offer on this peer what it may pass on."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        source = _PeerSource(self._peers, self._sessions, peer_id)
        try:
            with anyio.fail_after(_LIST_SECONDS):
                listed = await list_everything(await source.client())
        except Exception as exc:  # noqa: BLE001 - an unreachable peer offers nothing for now
            logger.info("could not list the resources and prompts of %s: %s", source.label, root_cause(exc))
            return
        await self._offer(peer, listed)

    async def _offer(self, peer: Peer, listed: Listed) -> None:
        """Offer on this peer what `peer` listed and this peer may pass on (reads go to `peer`)."""

        def name(prompt: str, route: list[str]) -> str:
            return namespaced(peer.name, prompt) if len(route) == 2 else prompt  # the peer's own: [peer, this one]

        def route(item: Item) -> list[str] | None:
            route = route_of(item) or [peer.id]
            return None if self._peer_id in route else [*route, self._peer_id]

        source = _PeerSource(self._peers, self._sessions, peer.id)
        self._by_peer[peer.id] = offers_of(listed, source, uri=lambda uri: uri, name=name, route=route)
        await self._publish()

    async def _publish(self) -> None:
        await self._host.set_mesh([o for offers in self._by_peer.values() for o in offers])
