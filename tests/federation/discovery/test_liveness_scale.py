"""Liveness at mesh size: each peer's ping rate stays flat as the mesh grows, and a crash still reaches everyone."""

from __future__ import annotations

import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack

import pytest

from federation.discovery import HealthMonitor
from federation.discovery.health import PROBES_PER_ROUND
from federation.node import Node
from tests.support.discovery import SpawnPeer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

StartNode = Callable[..., AbstractAsyncContextManager[Node]]

_ROUNDS = 8


def _monitor(node: Node) -> HealthMonitor:
    return next(s for s in node.services if isinstance(s, HealthMonitor))


async def _pings_per_round(nodes: list[Node]) -> float:
    """Pings each node sends per round over the next `_ROUNDS` rounds, averaged over the nodes (counted, not timed)."""
    monitors = [_monitor(node) for node in nodes]
    start = [(m.pings, m.rounds) for m in monitors]
    await wait_until(lambda: all(m.rounds - r >= _ROUNDS for m, (_, r) in zip(monitors, start, strict=True)), f"{_ROUNDS} rounds at every peer", timeout=30)
    rates = [(m.pings - p) / (m.rounds - r) for m, (p, r) in zip(monitors, start, strict=True)]
    return sum(rates) / len(rates)


async def test_ping_rate_stays_flat_as_the_mesh_grows_and_a_crash_reaches_every_peer(mdns_node: StartNode, spawn_peer: SpawnPeer) -> None:
    async with AsyncExitStack() as stack:
        victim = await spawn_peer("victim")
        nodes = [await stack.enter_async_context(mdns_node(name=f"small{i}")) for i in range(7)]
        await wait_until(lambda: all(len(n.peers) == 7 for n in nodes), "a mesh of 8 formed", timeout=30)
        small = await _pings_per_round(nodes)

        nodes += [await stack.enter_async_context(mdns_node(name=f"big{i}")) for i in range(17)]
        await wait_until(lambda: all(len(n.peers) == 24 and len(n.peers.up()) == 24 for n in nodes), "a mesh of 25 formed, all up", timeout=45)
        big = await _pings_per_round(nodes)
        # Pinging everyone would be 7 and 24 a round; a few more than k come from suspects and news on a busy machine.
        assert big <= small + 1 and small <= PROBES_PER_ROUND + 1, (small, big)

        victim_id = next(p.id for p in nodes[0].peers if p.name == "victim")
        await victim.stop(signal.SIGKILL)
        await wait_until(lambda: all(n.peers.get(victim_id).status == "dead" for n in nodes), "the killed peer marked dead by all 24 others")  # type: ignore[union-attr]
