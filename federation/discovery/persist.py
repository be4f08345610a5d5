"""Mirror the peer table into the store, so `mcpfed peers` can read what a running peer sees.

A writer task saves the rows (`PeerRecord`, owned by this peer) of the
peers the peer events name, shortly after they change, and the whole
table every `PEERS_REFRESH_SECONDS` for latency and load (every ping
changes them; writing each time cost a 50-peer machine measurable CPU).
Writes run in a worker thread, never on the event loop. On a clean stop the rows are
cleared: a stopped peer knows no peers.

`recall_peers` reads the table back when a node starts (rows left by a run
that did not stop cleanly): each direct peer's card is fetched again where it
was last reached and verified before it is admitted, so a restarted member
knows whom to expect and has them back before it answers its first client
(`federation.discovery.ready`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError

from federation.const import PEERS_REFRESH_SECONDS
from federation.contract import EventKind, PeerRow
from federation.discovery.admission import Member, Rejected, discovery_client, fetch_card
from federation.events import EventBus, Subscription
from federation.home import state_dir
from federation.http1 import ConnectionPool
from federation.identity import Identity
from federation.peers import Peer, PeerTable
from federation.store import PeerRecord, Store, database_url

__all__ = ["RecalledPeer", "Recollection", "persist_peers", "recall_peers", "stored_peers"]

logger = logging.getLogger(__name__)

_COALESCE_SECONDS = 1.0  # a burst of events (a mesh forming: ~N in seconds) becomes one write
_DIRECT = ("static", "mdns")  # routes checked by fetching the card again; relay routes come back with the relay link
_PEER_EVENTS: tuple[EventKind, ...] = ("peer_up", "peer_suspect", "peer_changed", "peer_down")


def stored_peers(home: Path | None = None, db: str | None = None) -> tuple[list[PeerRow], str]:
    """What the peer with state dir `home` last saved of its table, and where it was read from."""
    directory = state_dir(home)
    url = db or database_url(directory)
    observer = Identity.load_or_create(directory).peer_id
    store = Store(url)
    try:
        return [record.row() for record in store.peers(observer)], url
    finally:
        store.close()


async def _save(store: Store, observer: str, peers: list[Peer], *, only: set[str] | None = None) -> None:
    """Write the rows (`only`: just those of these peer ids, which are deleted when not in `peers`); a database that
    fails is logged, never fatal to the peer (the table lives in memory)."""
    now = time.time()
    rows = [PeerRecord.of(observer, peer.row(), peer.card, now) for peer in peers]
    with anyio.CancelScope(shield=True):
        try:
            await anyio.to_thread.run_sync(partial(store.save_peers, observer, rows, only=only))
        except SQLAlchemyError as exc:
            logger.warning("could not save the peer table to the store: %s", exc)


class _Changes:
    """The ids of the peers whose rows changed since the last write, as the peer events name them."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.everyone = True  # at first, and when events were dropped: which peers changed is unknown
        self.wake = anyio.Event()
        self.wake.set()

    async def collect(self, subscription: Subscription) -> None:
        async with subscription:
            async for event in subscription:
                peer_id = getattr(event.payload, "id", None)
                if peer_id:
                    self.ids.add(peer_id)
                else:  # `dropped`: the subscription missed some
                    self.everyone = True
                self.wake.set()

    def take(self) -> set[str] | None:
        """The changed ids (None: every row), and start over."""
        ids, everyone = self.ids, self.everyone
        self.ids, self.everyone, self.wake = set(), False, anyio.Event()
        return None if everyone else ids


async def _keep_saved(store: Store, peer_id: str, peers: PeerTable, subscription: Subscription) -> None:
    """Write the rows of the peers the events name, shortly after (a burst of events becomes one write), and every
    row every `PEERS_REFRESH_SECONDS` (latency and load change with every ping, and publish no event).

    Only the changed rows: while 100 peers meet, each peer hears ~100 events;
    rewriting its whole table at each (100 rows) was a quarter of the mesh's CPU.
    """
    changes = _Changes()
    refreshed = time.monotonic()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(changes.collect, subscription)
        while True:
            with anyio.move_on_after(max(0.0, refreshed + PEERS_REFRESH_SECONDS - time.monotonic())):
                await changes.wake.wait()
                await anyio.sleep(_COALESCE_SECONDS)
            ids = changes.take()
            if ids is None or time.monotonic() - refreshed >= PEERS_REFRESH_SECONDS:
                await _save(store, peer_id, list(peers))
                refreshed = time.monotonic()
            elif ids:
                await _save(store, peer_id, [p for p in map(peers.get, ids) if p is not None], only=ids)


@asynccontextmanager
async def persist_peers(*, store: Store, peer_id: str, peers: PeerTable, events: EventBus) -> AsyncIterator[None]:
    """Node service: keep the store's copy of the peer table of `peer_id` current (its changes come as `events`)."""
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(_keep_saved, store, peer_id, peers, events.subscribe(*_PEER_EVENTS))  # subscribed now: nothing from here on is missed
        yield
        task_group.cancel_scope.cancel()
    await _save(store, peer_id, [])


@dataclass
class RecalledPeer:
    """A peer from the stored table; `answered` once its card was fetched and verified again."""

    id: str
    name: str
    via: str
    url: str
    tried: bool = False
    answered: bool = False


class Recollection:
    """The stored table read back at start (see the module docstring).

    Handed what it uses: this peer's id, mesh and proof (`member`), the peer table it admits into.
    """

    def __init__(self, rows: list[PeerRecord], *, peer_id: str, peers: PeerTable, mesh: str | None, member: Member | None) -> None:
        self._peers = peers
        self._mesh = mesh
        self._member = member
        self.peers = [RecalledPeer(r.id, r.name, r.via, r.url) for r in rows if r.id != peer_id]

    def settled(self) -> bool:
        """Every recalled peer was tried or is up (relay-only ones count once the relay brings them back)."""
        return all(p.tried or self._is_up(p.id) for p in self.peers)

    def silent(self) -> list[RecalledPeer]:
        """Recalled peers that are not up."""
        return [p for p in self.peers if not self._is_up(p.id)]

    def _is_up(self, peer_id: str) -> bool:
        peer = self._peers.get(peer_id)
        return peer is not None and peer.status == "up"

    async def verify(self, http: ConnectionPool, recalled: RecalledPeer) -> None:
        """Fetch the card where the peer was last reached; admit it if it is still that peer, in our mesh."""
        try:
            card = await fetch_card(http, recalled.url, mesh=self._mesh, member=self._member, expected_id=recalled.id, check_address=recalled.via == "mdns")
        except Rejected as rejected:
            logger.info("stored peer %s (%s) not admitted again: %s", recalled.name, recalled.id, rejected)
        else:
            self._peers.admit(card, "mdns" if recalled.via == "mdns" else "static", recalled.url)
            recalled.answered = True
        finally:
            recalled.tried = True


@asynccontextmanager
async def recall_peers(*, store: Store, peer_id: str, peers: PeerTable, mesh: str | None, member: Member | None) -> AsyncIterator[Recollection]:
    """Node service: re-verify the stored table's peers once, in parallel (entered before `persist_peers` rewrites it)."""
    try:
        rows = await anyio.to_thread.run_sync(store.peers, peer_id)
    except SQLAlchemyError as exc:
        logger.warning("could not read the stored peer table: %s", exc)
        rows = []
    recollection = Recollection(rows, peer_id=peer_id, peers=peers, mesh=mesh, member=member)
    async with discovery_client() as http, anyio.create_task_group() as task_group:
        for recalled in recollection.peers:
            if recalled.via in _DIRECT:
                task_group.start_soon(recollection.verify, http, recalled)
        yield recollection
        task_group.cancel_scope.cancel()
