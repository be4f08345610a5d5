"""Liveness: ping every directly reachable peer's `/health` each interval.

A crashed peer sends no mDNS goodbye and its records stay cached for an
hour, so only asking tells us it is gone: each ping has a deadline, a miss
marks the peer suspect, three in a row dead (`PeerTable.miss`), and any answer
brings it back up with fresh latency and load. Dead peers keep being pinged,
so one that returns comes back by itself; one dead for `DEAD_FORGET_SECONDS`
is dropped. Peers known only through a relay are the relay link's business.

Each peer gets one kept-alive connection: a `HealthProbe` for plain HTTP
(the cheap path, see probe.py), httpx for HTTPS. `/health` is open, so pings
carry no credential: whoever answers at a peer's old address learns nothing. A round pings all peers at once (bounded)
and the next round starts one interval after the last began.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx

from federation.const import DEAD_FORGET_SECONDS, HEALTH_PATH, HEALTH_TIMEOUT_SECONDS
from federation.contract import Via
from federation.discovery.admission import discovery_client
from federation.discovery.probe import HealthProbe, ProbeError
from federation.peers import Peer, PeerTable
from federation.urls import base_url

__all__ = ["HealthMonitor", "health_monitor"]

_DIRECT: tuple[Via, ...] = ("static", "mdns")
_PARALLEL_PINGS = 64


def _direct_url(peer: Peer) -> str | None:
    for via in _DIRECT:
        if via in peer.routes:
            return base_url(peer.routes[via]) + HEALTH_PATH
    return None


class HealthMonitor:
    """Pings peers on a schedule and feeds the results to the peer table."""

    def __init__(self, peers: PeerTable, http: httpx.AsyncClient, *, interval: float) -> None:
        self._peers = peers
        self._http = http
        self._interval = interval
        self._timeout = max(interval, HEALTH_TIMEOUT_SECONDS)
        self._limiter = anyio.CapacityLimiter(_PARALLEL_PINGS)
        self._probes: dict[str, HealthProbe] = {}  # health URL -> its kept-alive connection

    async def run(self) -> None:
        try:
            while True:
                started = anyio.current_time()
                await self.ping_all()
                await anyio.sleep(max(0.0, started + self._interval - anyio.current_time()))
        finally:
            for probe in self._probes.values():
                await probe.aclose()

    async def ping_all(self) -> None:
        """One round: ping every direct peer at once, forget the long dead."""
        now = time.time()
        targets: dict[str, str] = {}
        for peer in self._peers:
            url = _direct_url(peer)
            if url is None:
                continue
            if peer.status == "dead" and now - peer.last_seen > DEAD_FORGET_SECONDS:
                for via in _DIRECT:
                    self._peers.drop_route(peer.id, via, reason="forgotten")
                continue
            targets[peer.id] = url
        for url in set(self._probes) - set(targets.values()):  # peers gone or moved
            await self._probes.pop(url).aclose()
        async with anyio.create_task_group() as task_group:
            for peer_id, url in targets.items():
                task_group.start_soon(self._ping, peer_id, url)

    async def _health(self, url: str) -> object:
        if url.startswith("http://"):
            probe = self._probes.get(url)
            if probe is None:
                probe = self._probes[url] = HealthProbe(url)
            return await probe.get()
        response = await self._http.get(url)
        response.raise_for_status()
        return response.json()

    async def _ping(self, peer_id: str, url: str) -> None:
        async with self._limiter:
            clock = time.perf_counter()
            health: object = None
            with anyio.move_on_after(self._timeout):
                try:
                    health = await self._health(url)
                except (ProbeError, httpx.HTTPError, ValueError):
                    pass
            latency_ms = (time.perf_counter() - clock) * 1000
        if not isinstance(health, dict) or health.get("id") != peer_id:
            self._peers.miss(peer_id)  # silent, failing, or someone else now answers there
            return
        self._peers.observe(
            peer_id,
            latency_ms=latency_ms,
            in_flight=_count(health.get("in_flight")),
            queued=_count(health.get("queued")),
            calls_served=_count(health.get("calls_served")),
        )


def _count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


@asynccontextmanager
async def health_monitor(peers: PeerTable, *, interval: float) -> AsyncIterator[HealthMonitor]:
    """Node service: health pings of the peers in `peers` every `interval` s for the node's lifetime."""
    async with discovery_client() as http, anyio.create_task_group() as task_group:
        monitor = HealthMonitor(peers, http, interval=interval)
        task_group.start_soon(monitor.run)
        yield monitor
        task_group.cancel_scope.cancel()
