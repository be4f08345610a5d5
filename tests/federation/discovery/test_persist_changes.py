"""The stored peer table follows the live one by rewriting only the rows of the peers that changed."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from federation.card import PeerCard
from federation.discovery import persist_peers
from federation.events import EventBus
from federation.identity import Identity
from federation.peers import PeerTable
from federation.store import PeerRecord, Store, database_url
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


async def test_a_change_to_one_peer_rewrites_its_row_only_and_a_peer_that_left_loses_its_row(tmp_path: Path) -> None:
    observer = Identity.generate()
    cards = [PeerCard(id=Identity.generate().peer_id, name=name, pubkey="") for name in ("alice", "bob", "carol")]
    async with Store(database_url(tmp_path), observer) as store:
        events = EventBus()
        peers = PeerTable(events, observer.peer_id)

        async def stored() -> dict[str, PeerRecord]:
            return {r.name: r for r in await anyio.to_thread.run_sync(store.peers, observer.peer_id)}

        async def shows(expected: dict[str, str]) -> bool:
            return {name: r.status for name, r in (await stored()).items()} == expected

        async with persist_peers(store=store, peer_id=observer.peer_id, peers=peers, events=events):
            for card in cards:
                peers.admit(card, "static", f"http://127.0.0.1:1/{card.name}/mcp")
            await wait_until(lambda: shows({"alice": "up", "bob": "up", "carol": "up"}), "every peer saved")
            before = await stored()
            peers.miss(cards[1].id)
            peers.drop_route(cards[2].id, "static")
            await wait_until(lambda: shows({"alice": "up", "bob": "suspect"}), "bob saved suspect, carol's row gone")
            after = await stored()
        events.close()
    assert after["alice"].saved_at == before["alice"].saved_at, "alice did not change: her row was not rewritten"
    assert after["bob"].saved_at > before["bob"].saved_at
