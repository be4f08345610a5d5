"""Peers on one machine find each other over loopback mDNS, notice crashes, and see clean leaves."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import anyio
import anyio.to_thread
import pytest
from mcp.server.mcpserver import MCPServer

from federation.contract import PeerRow
from federation.events import Event
from federation.node import Node
from federation.toolhost import HostedServer
from federation.watch import apply_peer_event, fetch_peers, sorted_peers
from tests.support.discovery import SpawnPeer, recorded_events
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

StartNode = Callable[..., AbstractAsyncContextManager[Node]]


def _status(node: Node, peer_id: str) -> str | None:
    peer = node.peers.get(peer_id)
    return None if peer is None else peer.status


def _story(events: list[Event], peer_id: str) -> list[str]:
    """The arrivals and departures of one peer told by an event stream (suspect flaps and recoveries left out)."""
    story: list[str] = []
    state: str | None = None  # None: not in the table
    for event in events:
        if event.data.get("id") != peer_id:
            continue
        if event.kind == "peer_up" and state in (None, "dead"):
            story.append("up")
        if event.kind == "peer_down":
            story.append(f"down:{event.data['reason']}")
            state = "dead" if event.data["reason"] == "unresponsive" else None
        elif event.kind in ("peer_up", "peer_suspect", "peer_changed"):
            state = event.data["status"]
    return story


def _fold(events: list[Event]) -> list[tuple[str, str]]:
    table: dict[str, PeerRow] = {}
    for event in events:
        apply_peer_event(table, event)
    return [(p.id, p.status) for p in sorted_peers(table)]


async def test_three_peers_see_each_other_and_notice_crash_return_and_leave(mdns_node: StartNode, spawn_peer: SpawnPeer) -> None:
    # Recording starts before beta does: `/events` tells only what happens after subscribing, and beta is admitted within milliseconds.
    async with mdns_node(name="alpha") as alpha, recorded_events(alpha.url) as events, mdns_node(name="beta") as beta:
        gamma = await spawn_peer("gamma")

        async def gamma_sees_both() -> bool:
            return {p.id for p in await fetch_peers(gamma.mcp_url)} == {alpha.peer_id, beta.peer_id}

        await wait_until(lambda: len(alpha.peers) == 2 and len(beta.peers) == 2, "alpha and beta see two peers each")
        await wait_until(gamma_sees_both, "gamma (a separate process) sees alpha and beta")
        gamma_id = next(p.id for p in alpha.peers if p.name == "gamma")
        assert alpha.peers.get(gamma_id).via == "mdns"  # type: ignore[union-attr]

        await gamma.stop(signal.SIGKILL)
        await wait_until(lambda: _status(alpha, gamma_id) == _status(beta, gamma_id) == "dead", "a SIGKILLed peer marked dead by both")

        gamma = await spawn_peer("gamma")  # same state dir: same identity, new port
        await wait_until(lambda: _status(alpha, gamma_id) == _status(beta, gamma_id) == "up", "the restarted peer back up at both")
        assert alpha.peers.get(gamma_id).url == gamma.mcp_url  # type: ignore[union-attr]

        await gamma.stop(signal.SIGTERM)
        await wait_until(lambda: gamma_id not in alpha.peers and gamma_id not in beta.peers, "a cleanly stopped peer gone from both", timeout=3.0)

        table_now = [(p.id, p.status) for p in await fetch_peers(alpha.url)]
        await wait_until(lambda: _fold(events) == table_now, "/events folded into a table equals GET /peers")

    assert _story(events, gamma_id) == ["up", "down:unresponsive", "up", "down:left"]
    seqs = [e.seq for e in events if e.kind != "hello"]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    suspect_at = next(i for i, e in enumerate(events) if e.kind == "peer_suspect" and e.data["id"] == gamma_id)
    dead_at = next(i for i, e in enumerate(events) if e.kind == "peer_down" and e.data["id"] == gamma_id)
    assert suspect_at < dead_at  # suspect first, then dead: the order a user watching /events sees


async def test_changed_card_is_refetched_and_announced_as_peer_changed(mdns_node: StartNode) -> None:
    async with mdns_node(name="watcher") as watcher, mdns_node(name="worker") as worker, recorded_events(watcher.url) as events:
        await wait_until(lambda: worker.peer_id in watcher.peers, "the worker admitted")
        assert watcher.peers.get(worker.peer_id).card.tools == []  # type: ignore[union-attr]

        extra = MCPServer("extra")

        @extra.tool()
        def shout(text: str) -> str:
            """Upper-case text."""
            return text.upper()

        await worker.tools.add_provider(HostedServer(extra))
        await wait_until(lambda: [t.name for t in watcher.peers.get(worker.peer_id).card.tools] == ["shout"], "the new tool seen by the watcher")  # type: ignore[union-attr]

        def announced() -> bool:  # peer_changed (or peer_up, had a slow ping just made it suspect)
            return any(e.kind in ("peer_changed", "peer_up") and e.data["id"] == worker.peer_id and e.data["tools"] == 1 for e in events)

        await wait_until(announced, "the change announced on /events")


async def test_peers_in_another_mesh_are_not_admitted(mdns_node: StartNode) -> None:
    async with mdns_node(name="ours") as ours, mdns_node(name="theirs", mesh="someone-elses") as theirs, mdns_node(name="friend") as friend:
        await wait_until(lambda: friend.peer_id in ours.peers, "a same-mesh peer admitted")
        assert theirs.peer_id not in ours.peers and ours.peer_id not in theirs.peers


async def test_stopped_node_leaves_no_stored_peers_and_a_running_one_stores_them(mdns_node: StartNode) -> None:
    async with mdns_node(name="keeper") as keeper:

        async def stored() -> list[tuple[str, str, str]]:
            rows = await anyio.to_thread.run_sync(keeper.store.peers, keeper.peer_id)
            return [(row.name, row.via, row.status) for row in rows]

        async with mdns_node(name="visitor"):
            await wait_until(lambda: _is(stored(), [("visitor", "mdns", "up")]), "the visitor stored in keeper's table")
        await wait_until(lambda: _is(stored(), []), "the departed visitor removed from the store")


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected
