"""The peer table's state changes, and the events each one publishes (what `/events`, the TUI and the router see)."""

from __future__ import annotations

import pytest

from federation.card import PeerCard, ToolSummary
from federation.contract import PeerRow
from federation.events import EventBus, Subscription
from federation.identity import Identity
from federation.peers import DEAD_AFTER_MISSES, JOIN_GRACE_SECONDS, PeerTable

pytestmark = pytest.mark.anyio

SELF = Identity.generate()


def card_of(identity: Identity, name: str = "alice", *, tools: tuple[str, ...] = (), issued_at: float = 0.0) -> PeerCard:
    """A card for `identity`, unsigned: the table trusts its callers to admit only verified cards."""
    return PeerCard(id=identity.peer_id, name=name, pubkey="", tools=[ToolSummary(name=t) for t in tools], issued_at=issued_at)


def table() -> tuple[PeerTable, EventBus, Subscription]:
    bus = EventBus()
    return PeerTable(bus, SELF.peer_id), bus, bus.subscribe()


async def published(bus: EventBus, events: Subscription) -> list[tuple[str, str | None, str | None]]:
    """(kind, status, reason) of every event published so far; ends the subscription."""
    bus.close()
    return [(e.kind, e.data.get("status"), e.data.get("reason")) async for e in events]


async def test_a_new_peer_is_admitted_up_and_announced_with_its_row() -> None:
    peers, bus, events = table()
    alice = Identity.generate()
    peer = peers.admit(card_of(alice, tools=("search",)), "mdns", "http://127.0.0.1:1/mcp")
    assert peer is not None and peer.status == "up" and peer.misses == 0
    assert alice.peer_id in peers and peers.get(alice.peer_id) is peer and len(peers) == 1
    bus.close()
    (event,) = [e async for e in events]
    assert event.kind == "peer_up"
    assert PeerRow.model_validate(event.data) == peer.row()  # the event carries the row the table serves
    assert (event.data["via"], event.data["url"], event.data["tools"]) == ("mdns", "http://127.0.0.1:1/mcp", 1)


async def test_our_own_card_is_never_admitted() -> None:
    peers, bus, events = table()
    assert peers.admit(card_of(SELF, "me"), "mdns", "http://127.0.0.1:1/mcp") is None
    assert len(peers) == 0
    assert await published(bus, events) == []


async def test_seeing_a_peer_again_is_silent_unless_its_card_or_route_changed() -> None:
    peers, bus, events = table()
    alice = Identity.generate()
    peers.admit(card_of(alice), "mdns", "http://127.0.0.1:1/mcp")
    peers.admit(card_of(alice), "mdns", "http://127.0.0.1:1/mcp")
    peers.admit(card_of(alice, tools=("shout",)), "mdns", "http://127.0.0.1:1/mcp")
    peers.admit(card_of(alice, tools=("shout",)), "relay", "http://relay/p/alice/mcp")
    assert await published(bus, events) == [("peer_up", "up", None), ("peer_changed", "up", None), ("peer_changed", "up", None)]


async def test_misses_make_a_peer_suspect_then_dead_and_each_change_is_announced_once() -> None:
    peers, bus, events = table()
    alice = Identity.generate()
    peers.admit(card_of(alice), "static", "http://127.0.0.1:1/mcp")
    peers.observe(alice.peer_id, latency_ms=5.0, in_flight=2, queued=1)
    statuses = []
    for _ in range(DEAD_AFTER_MISSES + 1):
        peers.miss(alice.peer_id)
        statuses.append(peers.get(alice.peer_id).status)  # type: ignore[union-attr]
    assert statuses == ["suspect"] * (DEAD_AFTER_MISSES - 1) + ["dead", "dead"]
    dead = peers.get(alice.peer_id)
    assert dead is not None and (dead.in_flight, dead.queued) == (0, 0), "a dead peer runs nothing we could wait for"
    assert await published(bus, events) == [("peer_up", "up", None), ("peer_suspect", "suspect", None), ("peer_down", "dead", "unresponsive")]


@pytest.mark.parametrize("misses", [1, DEAD_AFTER_MISSES])
async def test_any_success_brings_a_suspect_or_dead_peer_back_up(misses: int) -> None:
    peers, bus, events = table()
    alice = Identity.generate()
    peers.admit(card_of(alice), "mdns", "http://127.0.0.1:1/mcp")
    for _ in range(misses):
        peers.miss(alice.peer_id)
    peers.observe(alice.peer_id, latency_ms=3.0)
    peer = peers.get(alice.peer_id)
    assert peer is not None and (peer.status, peer.misses) == ("up", 0)
    peers.miss(alice.peer_id)
    assert peer.status == "suspect", "the miss count starts over"
    assert (await published(bus, events))[-2:] == [("peer_up", "up", None), ("peer_suspect", "suspect", None)]


async def test_a_row_says_since_when_its_status_holds() -> None:
    """`since` moves with the status only: how long a peer has been down (or back), not when it was last pinged."""
    peers, _, _ = table()
    alice = Identity.generate()
    peer = peers.admit(card_of(alice), "mdns", "http://127.0.0.1:1/mcp")
    assert peer is not None
    peer.since = 1.0  # long ago
    peers.observe(alice.peer_id, latency_ms=3.0)
    assert peer.row().since == 1.0, "still up: same since"
    peers.miss(alice.peer_id)
    suspected = peer.row().since
    assert suspected > 1.0
    peers.miss(alice.peer_id)
    assert peer.row().since == suspected, "still suspect"
    peers.observe(alice.peer_id, latency_ms=3.0)
    assert peer.row().since >= suspected and peer.status == "up"


async def test_a_dead_peer_that_announces_itself_again_is_up() -> None:
    peers, bus, events = table()
    alice = Identity.generate()
    peers.admit(card_of(alice), "mdns", "http://127.0.0.1:1/mcp")
    for _ in range(DEAD_AFTER_MISSES):
        peers.miss(alice.peer_id)
    peers.admit(card_of(alice), "mdns", "http://127.0.0.1:1/mcp")
    assert peers.get(alice.peer_id).status == "up"  # type: ignore[union-attr]
    assert [kind for kind, _, _ in await published(bus, events)] == ["peer_up", "peer_suspect", "peer_down", "peer_up"]


async def test_a_peer_that_never_answered_is_not_reported_dead_while_it_joins() -> None:
    """Start-up on a loaded machine: pings to a peer still starting time out; that is no death, and no `peer_down` flip.

    A refusal is: no process is there at all."""
    peers, bus, events = table()
    alice, bob, carol = Identity.generate(), Identity.generate(), Identity.generate()
    for who in (alice, bob, carol):
        peers.admit(card_of(who), "mdns", "http://127.0.0.1:1/mcp")
    for _ in range(DEAD_AFTER_MISSES * 3):
        peers.miss(alice.peer_id, timed_out=True)
    assert peers.get(alice.peer_id).status == "suspect"  # type: ignore[union-attr]
    for _ in range(DEAD_AFTER_MISSES):
        peers.miss(bob.peer_id)  # refused: no process is there at all, however new
    assert peers.get(bob.peer_id).status == "dead"  # type: ignore[union-attr]
    peers.get(carol.peer_id).first_seen -= JOIN_GRACE_SECONDS  # type: ignore[union-attr]  # known for the whole grace, never answered
    for _ in range(DEAD_AFTER_MISSES):
        peers.miss(carol.peer_id, timed_out=True)
    assert peers.get(carol.peer_id).status == "dead", "a peer that never answers is not kept forever"  # type: ignore[union-attr]
    kinds = [(kind, status) for kind, status, _ in await published(bus, events)]
    assert kinds.count(("peer_suspect", "suspect")) == 3 and kinds.count(("peer_down", "dead")) == 2


async def test_contact_with_an_unknown_peer_changes_nothing() -> None:
    peers, bus, events = table()
    peers.miss("nobody")
    peers.observe("nobody", latency_ms=1.0)
    peers.drop_route("nobody", "mdns")
    assert len(peers) == 0 and await published(bus, events) == []


def test_latency_is_a_moving_average_and_the_load_is_the_last_report() -> None:
    peers, _, _ = table()
    alice = Identity.generate()
    peers.admit(card_of(alice), "mdns", "http://127.0.0.1:1/mcp")
    peers.observe(alice.peer_id, latency_ms=10.0, in_flight=3, queued=2, calls_served=7)
    peers.observe(alice.peer_id, latency_ms=20.0, in_flight=1)
    peer = peers.get(alice.peer_id)
    assert peer is not None
    assert peer.latency_ms == pytest.approx(13.0)
    assert (peer.in_flight, peer.queued, peer.calls_served) == (1, 0, 7)


async def test_a_peer_keeps_every_route_prefers_a_direct_one_and_is_forgotten_with_its_last() -> None:
    peers, bus, events = table()
    alice = Identity.generate()
    peers.admit(card_of(alice), "relay", "http://relay/p/alice/mcp")
    peers.admit(card_of(alice), "static", "http://127.0.0.1:1/mcp")
    peer = peers.get(alice.peer_id)
    assert peer is not None and (peer.via, peer.url) == ("static", "http://127.0.0.1:1/mcp")
    peers.drop_route(alice.peer_id, "static")
    assert (peer.via, peer.url) == ("relay", "http://relay/p/alice/mcp")
    peers.drop_route(alice.peer_id, "relay", reason="forgotten")
    assert alice.peer_id not in peers
    assert await published(bus, events) == [("peer_up", "up", None), ("peer_changed", "up", None), ("peer_changed", "up", None), ("peer_down", "up", "forgotten")]


async def test_a_goodbye_removes_the_peer_at_once_and_says_it_left() -> None:
    peers, bus, events = table()
    alice = Identity.generate()
    peers.admit(card_of(alice), "mdns", "http://127.0.0.1:1/mcp")
    peers.drop_route(alice.peer_id, "mdns")
    assert len(peers) == 0
    assert (await published(bus, events))[-1] == ("peer_down", "up", "left")


def test_find_takes_an_id_an_id_prefix_or_the_newest_peer_of_a_name() -> None:
    peers, _, _ = table()
    old, new, other = Identity.generate(), Identity.generate(), Identity.generate()
    peers.admit(card_of(old, "twin", issued_at=1.0), "mdns", "http://127.0.0.1:1/mcp")
    peers.admit(card_of(new, "twin", issued_at=2.0), "mdns", "http://127.0.0.1:2/mcp")
    peers.admit(card_of(other, "bob"), "mdns", "http://127.0.0.1:3/mcp")
    assert peers.find(other.peer_id).id == other.peer_id  # type: ignore[union-attr]
    assert peers.find(other.peer_id[:10]).id == other.peer_id  # type: ignore[union-attr]
    assert peers.find("twin").id == new.peer_id  # type: ignore[union-attr]
    assert peers.find("nobody") is None
    assert [row.name for row in peers.snapshot()] == ["bob", "twin", "twin"]
    assert {p.id for p in peers.up()} == {old.peer_id, new.peer_id, other.peer_id}
