"""Mirror the peer table into the store, so `mcpfed peers` can read what a running peer sees.

A writer task saves the whole table (as `PeerRecord` rows owned by this
peer) shortly after anything but latency and load changes, and refreshes
those every `PEERS_REFRESH_SECONDS` (every ping changes them; writing each
time cost a 50-peer machine measurable CPU). Writes run in a worker thread,
never on the event loop. On a clean stop the rows are
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
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
from sqlalchemy.exc import SQLAlchemyError

from federation.const import PEERS_REFRESH_SECONDS, PEERS_SAVE_SECONDS
from federation.contract import PeerRow
from federation.discovery.admission import Member, Rejected, discovery_client, fetch_card
from federation.events import EventBus
from federation.home import state_dir
from federation.identity import Identity
from federation.peers import Peer, PeerTable
from federation.store import PeerRecord, Store, database_url

__all__ = ["RecalledPeer", "Recollection", "persist_peers", "recall_peers", "stored_peers"]

logger = logging.getLogger(__name__)

_COALESCE_SECONDS = 0.05
_DIRECT = ("static", "mdns")  # routes checked by fetching the card again; relay routes come back with the relay link
_VOLATILE = {"last_seen", "latency_ms", "in_flight", "queued", "calls_served"}  # a set, the type model_dump takes


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


async def _save(store: Store, observer: str, peers: list[Peer]) -> None:
    """Write the rows; a database that fails is logged, never fatal to the peer (the table lives in memory)."""
    now = time.time()
    rows = [PeerRecord.of(observer, peer.row(), peer.card, now) for peer in peers]
    with anyio.CancelScope(shield=True):
        try:
            await anyio.to_thread.run_sync(store.save_peers, observer, rows)
        except SQLAlchemyError as exc:
            logger.warning("could not save the peer table to the store: %s", exc)


def _lasting(snapshot: list[PeerRow]) -> list[dict[str, Any]]:
    """The snapshot without what every ping changes (seen time, latency, load)."""
    return [row.model_dump(exclude=_VOLATILE) for row in snapshot]


async def _keep_saved(store: Store, peer_id: str, peers: PeerTable, events: EventBus) -> None:
    last: list[dict[str, Any]] | None = None
    refreshed = time.monotonic()
    async with events.subscribe() as subscription:
        while True:
            with anyio.move_on_after(PEERS_SAVE_SECONDS):
                event = await anext(subscription, None)
                if event is None:
                    return  # the bus closed: the node is stopping
                await anyio.sleep(_COALESCE_SECONDS)  # a burst of events becomes one write
            lasting = _lasting(peers.snapshot())
            stale = time.monotonic() - refreshed >= PEERS_REFRESH_SECONDS and bool(lasting)
            if lasting != last or stale:
                await _save(store, peer_id, list(peers))
                last, refreshed = lasting, time.monotonic()


@asynccontextmanager
async def persist_peers(*, store: Store, peer_id: str, peers: PeerTable, events: EventBus) -> AsyncIterator[None]:
    """Node service: keep the store's copy of the peer table of `peer_id` current (its changes come as `events`)."""
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(_keep_saved, store, peer_id, peers, events)
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

    async def verify(self, http: httpx.AsyncClient, recalled: RecalledPeer) -> None:
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
