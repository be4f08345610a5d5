"""Discovery services are built from the parts they use (no `Node` on this side): a peer table, an event bus, a store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import pytest

from federation.discovery import health_monitor, persist_peers, recall_peers, static_peers
from federation.discovery.ready import first_look
from federation.events import EventBus
from federation.identity import Identity
from federation.node import Node
from federation.peers import PeerTable
from federation.store import PeerRecord, Store, database_url
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


async def _equals(value: Awaitable[list[str]], expected: list[str]) -> bool:
    return await value == expected


async def test_static_health_persist_and_recall_without_a_node(start_node: Callable[..., AbstractAsyncContextManager[Node]], tmp_path: Path) -> None:
    identity = Identity.generate()
    async with start_node(name="other") as other, Store(database_url(tmp_path), identity) as store:
        mesh = other.settings.mesh
        events = EventBus()
        peers = PeerTable(events, identity.peer_id)
        async with (
            persist_peers(store=store, peer_id=identity.peer_id, peers=peers, events=events),
            static_peers([other.url], name="alone", peer_id=identity.peer_id, mesh=mesh, member=None, peers=peers) as static,
            health_monitor(peers, self_id=identity.peer_id, interval=0.05),
        ):
            look = await first_look(peers, [static], limit=10)
            assert [p.name for p in look.peers] == ["other"] and not look.named_problems
            await wait_until(lambda: (p := peers.get(other.peer_id)) is not None and p.latency_ms is not None, "a health ping answered")

            async def stored() -> list[str]:
                return [r.id for r in await anyio.to_thread.run_sync(store.peers, identity.peer_id)]

            await wait_until(lambda: _equals(stored(), [other.peer_id]), "the table saved to the store")
            rows = [PeerRecord.model_validate(row.model_dump()) for row in await anyio.to_thread.run_sync(store.peers, identity.peer_id)]
        events.close()
        again = PeerTable(EventBus(), identity.peer_id)
        await anyio.to_thread.run_sync(store.save_peers, identity.peer_id, rows)  # what a run that did not stop cleanly leaves
        async with recall_peers(store=store, peer_id=identity.peer_id, peers=again, mesh=mesh, member=None) as recollection:
            look = await first_look(again, [recollection], limit=10)
            assert [p.name for p in look.peers] == ["other"] and not look.silent
