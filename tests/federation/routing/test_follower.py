"""The node's one peer follower: a peer's offers are learned when there is news, not at every flap."""

from __future__ import annotations

import anyio
import pytest

from federation.card import PeerCard, ToolSummary
from federation.events import EventBus
from federation.identity import Identity
from federation.peers import DEAD_AFTER_MISSES, PeerTable
from federation.routing.follower import PeerFollower
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


def _card(identity: Identity, *tools: str) -> PeerCard:
    return PeerCard(id=identity.peer_id, name="alice", pubkey="", tools=[ToolSummary(name=t) for t in tools])


async def test_a_peer_is_learned_when_new_changed_or_back_from_down_and_not_when_it_flaps() -> None:
    events = EventBus()
    peers = PeerTable(events, Identity.generate().peer_id)
    alice = Identity.generate()
    learned: list[str] = []
    forgotten: list[str] = []

    async def forget(peer_id: str) -> None:
        forgotten.append(peer_id)

    async with PeerFollower(events, peers) as follower:
        follower.add(learned.append, forget)
        await anyio.sleep(0.05)  # the follower is subscribed and idle
        peers.admit(_card(alice), "mdns", "http://127.0.0.1:1/mcp")
        await wait_until(lambda: learned == [alice.peer_id], "a new peer learned")
        peers.observe(alice.peer_id, latency_ms=1.0)
        for _ in range(2):  # slow answers on a busy machine: suspect, then up again
            peers.miss(alice.peer_id)
            peers.observe(alice.peer_id, latency_ms=1.0)
        peers.admit(_card(alice), "relay", "http://relay/p/alice/mcp")  # another route to the same card
        peers.admit(_card(alice, "shout"), "mdns", "http://127.0.0.1:1/mcp")  # its card changed: news
        await wait_until(lambda: len(learned) == 2, "the changed card learned")
        for _ in range(DEAD_AFTER_MISSES):
            peers.miss(alice.peer_id)
        await wait_until(lambda: forgotten == [alice.peer_id], "a dead peer forgotten")
        peers.observe(alice.peer_id, latency_ms=1.0)
        await wait_until(lambda: len(learned) == 3, "a peer back from dead learned again")
        await anyio.sleep(0.05)
    assert learned == [alice.peer_id] * 3, "the suspect flaps and the second route were no news"
