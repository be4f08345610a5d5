"""Static peers (`--peer URL`): for networks where multicast does not get through.

Each URL is fetched, verified (signature, id, our mesh) and admitted as
`via="static"`. An unreachable URL is retried with backoff until it answers;
a reachable one is re-fetched every `STATIC_REFRESH_SECONDS` (a static peer
has no mDNS digest to watch). The health monitor handles its liveness like
any other direct peer. The user chose the address, so unlike mDNS hints the
card need not name it (the peer may sit behind a port forward).

The user named these peers, so what became of each is kept (`StaticPeers.named`):
a client's first look (`federation.discovery.ready`) turns a peer that was
refused or never answered into an error that says why, instead of letting
prompts go to whoever else is found.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from federation.const import DISCOVERY_RETRY_SECONDS, STATIC_REFRESH_SECONDS
from federation.discovery.admission import Member, Rejected, RejectionLog, discovery_client, fetch_card
from federation.http1 import ConnectionPool
from federation.peers import PeerTable
from federation.urls import mcp_url

__all__ = ["NamedPeer", "StaticPeers", "static_peers"]


@dataclass
class NamedPeer:
    """One `--peer URL` and what became of it: admitted as `peer_id`, or the last reason it was not."""

    url: str
    peer_id: str | None = None
    rejected: Rejected | None = None

    @property
    def tried(self) -> bool:
        return self.peer_id is not None or self.rejected is not None

    @property
    def refused(self) -> bool:
        """Turned away for good (wrong mesh, bad card, this peer itself), not merely silent so far."""
        return self.peer_id is None and self.rejected is not None and not self.rejected.retry


class StaticPeers:
    """The `--peer` URLs of a node and their outcomes (see the module docstring).

    Handed what it uses: the URLs, this peer's name and id, its mesh and proof
    (`member`), the peer table it admits into.
    """

    def __init__(
        self, urls: list[str], *, name: str, peer_id: str, mesh: str | None, member: Member | None, peers: PeerTable, http: ConnectionPool
    ) -> None:
        self._peer_id = peer_id
        self._mesh = mesh
        self._member = member
        self._peers = peers
        self._http = http
        self._rejections = RejectionLog(name)
        self.named = [NamedPeer(url) for url in urls]

    async def keep(self, named: NamedPeer) -> None:
        """Keep one URL admitted while it answers, retrying with backoff while it does not."""
        first, cap = DISCOVERY_RETRY_SECONDS
        delay = first
        while True:
            try:
                card = await fetch_card(self._http, named.url, mesh=self._mesh, member=self._member)
                if card.id == self._peer_id:
                    raise Rejected("itself", f"{named.url} is this peer itself ({card.name}, {card.id})")
            except Rejected as rejected:
                named.rejected = rejected
                self._rejections.report(named.url, rejected.reason, f"{rejected} (retrying every {cap:g} s at most)")
                await anyio.sleep(delay)
                delay = min(cap, delay * 2)
                continue
            self._rejections.forget(named.url)
            self._peers.admit(card, "static", mcp_url(named.url))
            named.peer_id, named.rejected = card.id, None
            delay = first
            await anyio.sleep(STATIC_REFRESH_SECONDS)


@asynccontextmanager
async def static_peers(
    urls: list[str], *, name: str, peer_id: str, mesh: str | None, member: Member | None, peers: PeerTable
) -> AsyncIterator[StaticPeers]:
    """Node service: keep every URL of `urls` (`settings.peers`) admitted while it answers."""
    async with discovery_client() as http, anyio.create_task_group() as task_group:
        static = StaticPeers(urls, name=name, peer_id=peer_id, mesh=mesh, member=member, peers=peers, http=http)
        for named in static.named:
            task_group.start_soon(static.keep, named)
        yield static
        task_group.cancel_scope.cancel()
