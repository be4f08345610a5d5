"""Liveness, SWIM-style: each interval ping a few peers' `/health`, and spread what the pings show.

A crashed peer sends no mDNS goodbye and its records stay cached for an
hour, so only asking tells us it is gone. Pinging every peer every interval
costs N² pings across a mesh (50 peers saturated 2 cores), so a round pings
`PROBES_PER_ROUND` peers, taken in turn from a shuffled list (each peer is
pinged within N/k rounds). Across the mesh a peer is still pinged about k
times per interval, by someone.

What a ping shows is told to others (rumours.py) on the pings themselves:
in the request and in the answer. Hearing "suspect" or "dead" about a peer
makes us ping it soon (once per interval per peer, k per wave, however
many tell us). A miss counts as usual: the first marks the peer suspect,
three in a row dead, and a suspect is pinged every round. A miss that
shows the process gone (the connection refused or reset, or another peer
answering at its address), backed by another peer's own "suspect" or
"dead" within the news' lifetime, heard before or after, is dead at once
(`PeerTable.fail`): two peers saw it fail and one saw nothing listening.
Telling a new suspect or dead also pings k random peers at once, so a
crash is called dead ~one hop after the first miss instead of three
intervals, and the verdict spreads hop by hop in a fraction of an
interval, each hearer checking it with its own ping (100 peers on 2
cores waited ~2.3 s for the first peer's third miss: crashes took 3.5-4
s to reach everyone). A timeout or an odd answer (not 200, not JSON)
never counts as more than one miss: on an overloaded machine (40 peers
on 2 cores) treating slow answers as a second witness spread false
deaths mesh-wide, and each flip costs every peer work. Per peer that is
k pings per interval, plus k dead and every suspect peer, plus per crash
one confirmation and k pushes, whatever N is. A peer that hears itself suspected answers "up" (SWIM's refutation),
and a peer that sees a suspect or dead peer answer tells "up". Dead peers
stay in play (k of them per round), so one that returns comes back by
itself; one dead for `DEAD_FORGET_SECONDS` is dropped. Peers known only
through a relay are the relay link's business.

A reply also names the digest of the answerer's card (`cd`): a pinger
holding another fetches the card again (what the peer offers, tools and
content, is followed by its card).

Each peer gets a kept-alive connection from one lean HTTP/1.1 pool
(`federation.http1`, as the forwarder's; httpx cost ~5x the CPU per ping),
the discovery pool that also fetches changed cards.
`/health` is open, so pings carry no credential and news is only ever a
reason to ping (rumours.py).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from federation.const import DEAD_FORGET_SECONDS, HEALTH_PATH, HEALTH_TIMEOUT_SECONDS
from federation.contract import Via
from federation.discovery.admission import Member, Rejected, discovery_client, fetch_card
from federation.discovery.rumours import NEWS_HEADER, Rumours, Status, decode_news, encode_news
from federation.http1 import ConnectionPool, HttpError, Timeouts, Unreachable
from federation.listen import KEEP_ALIVE_SECONDS
from federation.peers import Peer, PeerTable
from federation.urls import base_url

__all__ = ["PROBES_PER_ROUND", "HealthMonitor", "health_monitor"]

logger = logging.getLogger(__name__)

PROBES_PER_ROUND = 3
"""Peers pinged per interval in turn (SWIM's k); suspects and news add to it."""

_DIRECT: tuple[Via, ...] = ("static", "mdns")
_PARALLEL_PINGS = 64
_NEWS_ROUNDS = 3  # news is told for this many intervals
_MAX_HEALTH_BYTES = 64 * 1024
_WAVE_SPACING = 0.25  # of an interval: pings prompted by news wait this long after the last such wave


def _direct_route(peer: Peer) -> tuple[Via, str] | None:
    """The route pings take to a peer (static first, then mDNS), or None for a peer reached only through a relay."""
    return next(((via, peer.routes[via]) for via in _DIRECT if via in peer.routes), None)


def _direct_url(peer: Peer) -> str | None:
    route = _direct_route(peer)
    return None if route is None else base_url(route[1]) + HEALTH_PATH


class HealthMonitor:
    """Pings a few peers per interval, tells and hears liveness news, feeds the results to the peer table.

    `pings` and `rounds` count what it sent, so a caller can see the rate stay flat as the mesh grows.
    """

    def __init__(
        self, peers: PeerTable, pool: ConnectionPool, *, self_id: str, interval: float, mesh: str | None = None, member: Member | None = None
    ) -> None:
        """`pool` carries the pings and fetches changed cards (with the membership proof in a secret mesh)."""
        self._peers = peers
        self._pool = pool
        self._self_id = self_id
        self._mesh = mesh
        self._member = member
        self._interval = interval
        self._timeout = max(interval, HEALTH_TIMEOUT_SECONDS)
        self._ping_timeouts = Timeouts(connect=self._timeout, read=self._timeout, pool=self._timeout)  # `_ping`'s deadline cuts first
        self._limiter = anyio.CapacityLimiter(_PARALLEL_PINGS)
        self._pinged_urls: set[str] = set()  # health URLs pinged lately: a peer gone or moved has its connection closed
        self._rumours = Rumours(ttl=interval * _NEWS_ROUNDS)
        self._reported: dict[str, float] = {}  # peer id -> until when another peer's "suspect" or "dead" backs a miss
        self._gone: dict[str, float] = {}  # peer id -> until when our own ping finding it gone backs another's report
        self._turns: list[str] = []  # peer ids still to ping this pass, in shuffled order
        self._prompted: set[str] = set()  # peer ids news asks us to ping now
        self._pinged: dict[str, float] = {}  # peer id -> when we last pinged it: news older than that is no reason to ping
        self._push = False  # we have new bad news: ping k random peers now to pass it on
        self._wake = anyio.Event()
        self.pings = 0
        self.rounds = 0

    def news(self) -> list[str]:
        """What this peer tells whoever pings it (its `/health` reply carries it)."""
        return encode_news(self._rumours.news())

    def hear(self, raw: object) -> None:
        """News from a ping's request header or a reply: ping the peers it names whose state it contradicts."""
        now = time.monotonic()
        for status, peer_id in decode_news(raw):
            if peer_id == self._self_id:
                if status != "up":
                    self._tell(peer_id, "up")  # refute: we are alive
                continue
            peer = self._peers.get(peer_id)
            if peer is None or _direct_url(peer) is None:
                continue
            if status != "up":
                self._reported[peer_id] = now + self._interval * _NEWS_ROUNDS
                if self._gone.get(peer_id, 0.0) > now and peer.status != "dead":  # we found it gone just before: a second witness
                    self._peers.fail(peer_id)
                    self._tell(peer_id, "dead")
                    continue
            fresh = now - self._pinged.get(peer_id, 0.0) >= self._interval  # the same news comes from many peers
            if fresh and ((peer.status != "up") if status == "up" else (peer.status != "dead")):
                self._prompted.add(peer_id)
                self._wake.set()

    async def run(self) -> None:
        next_round = anyio.current_time()
        while True:
            due = anyio.current_time() >= next_round
            if due or self._prompted or self._push:
                targets = self._targets()
                for url in self._pinged_urls - set(targets.values()):  # peers gone or moved
                    self._pool.drop(url)
                self._pinged_urls &= set(targets.values())
                await self._ping_each(self._round(targets) if due else self._wave(targets))
                if due:
                    next_round = anyio.current_time() + self._interval
                    self.rounds += 1
                else:
                    await anyio.sleep(self._interval * _WAVE_SPACING)
            self._wake = anyio.Event()
            if not (self._prompted or self._push):
                with anyio.move_on_after(max(0.0, next_round - anyio.current_time())):
                    await self._wake.wait()

    def _targets(self) -> dict[str, str]:
        """Peer id -> health URL of every direct peer; the long dead are forgotten here."""
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
        return targets

    def _round(self, targets: dict[str, str]) -> dict[str, str]:
        """This interval's pings: the next k in turn, every suspect, k dead ones, k of those news asked about."""
        now = time.monotonic()
        self._reported = {p: until for p, until in self._reported.items() if until > now}
        self._gone = {p: until for p, until in self._gone.items() if until > now}
        self._pinged = {p: at for p, at in self._pinged.items() if p in targets}
        status = {p: self._peers.get(p).status for p in targets}  # type: ignore[union-attr]  # from the table just now
        chosen = {p for p in targets if status[p] == "suspect"}
        dead = [p for p in targets if status[p] == "dead"]
        chosen |= set(random.sample(dead, min(PROBES_PER_ROUND, len(dead))))  # so a wrongly dead peer is soon back
        chosen |= self._take_prompted(targets)
        in_turn = 0
        for _refill in range(2):
            while self._turns and in_turn < PROBES_PER_ROUND:
                peer_id = self._turns.pop()
                if peer_id in targets and peer_id not in chosen:
                    chosen.add(peer_id)
                    in_turn += 1
            if in_turn < PROBES_PER_ROUND:
                self._turns = random.sample(list(targets), len(targets))
        self._push = False  # this round carries the news anyway
        return {peer_id: targets[peer_id] for peer_id in chosen}

    def _wave(self, targets: dict[str, str]) -> dict[str, str]:
        """Pings between rounds: k of the peers news asked about, and k random up peers to pass our news on."""
        chosen = self._take_prompted(targets)
        if self._push:
            up = [p.id for p in self._peers.up() if p.id in targets and p.id not in chosen]
            chosen |= set(random.sample(up, min(PROBES_PER_ROUND, len(up))))
        self._push = False
        return {peer_id: targets[peer_id] for peer_id in chosen}

    def _take_prompted(self, targets: dict[str, str]) -> set[str]:
        """k of the peers news asked us to ping; the rest wait for the next wave or round."""
        asked = list(self._prompted & targets.keys())
        taken = set(random.sample(asked, min(PROBES_PER_ROUND, len(asked))))
        self._prompted = set(asked) - taken
        return taken

    async def _ping_each(self, targets: dict[str, str]) -> None:
        async with anyio.create_task_group() as task_group:
            for peer_id, url in targets.items():
                task_group.start_soon(self._ping, peer_id, url)

    async def _health(self, url: str) -> object:
        """The peer's `/health` reply, parsed; HttpError or ValueError when there is none."""
        news = self.news()
        headers = [(NEWS_HEADER.lower().encode(), " ".join(news).encode("latin-1"))] if news else []
        self.pings += 1
        self._pinged_urls.add(url)
        status, body = await self._pool.fetch(b"GET", url, headers, self._ping_timeouts, limit=_MAX_HEALTH_BYTES)
        if status != 200:
            raise HttpError(f"{url} answered HTTP {status}")
        return json.loads(body)

    async def _ping(self, peer_id: str, url: str) -> None:
        self._pinged[peer_id] = time.monotonic()
        async with self._limiter:
            clock = time.perf_counter()
            health: object = None
            unreachable = False
            with anyio.move_on_after(self._timeout) as waited:
                try:
                    health = await self._health(url)
                except Unreachable:
                    unreachable = True
                except (HttpError, ValueError):
                    pass
            latency_ms = (time.perf_counter() - clock) * 1000
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        was = peer.status
        if not isinstance(health, dict) or health.get("id") != peer_id:  # silent, failing, or someone else now answers there
            now = time.monotonic()
            gone = not waited.cancelled_caught and (unreachable or isinstance(health, dict))  # nothing listening, or another peer there
            if gone and self._reported.get(peer_id, 0.0) > now:
                self._peers.fail(peer_id)  # a gone process, not a slow one, and another peer missed it too
            else:
                self._peers.miss(peer_id, timed_out=waited.cancelled_caught)
                if gone:
                    self._gone[peer_id] = now + self._interval * _NEWS_ROUNDS
        else:
            self._reported.pop(peer_id, None)
            self._gone.pop(peer_id, None)
            self._peers.observe(
                peer_id,
                latency_ms=latency_ms,
                in_flight=_count(health.get("in_flight")),
                queued=_count(health.get("queued")),
                calls_served=_count(health.get("calls_served")),
            )
            self.hear(health.get("news"))
            if health.get("cd", peer.card.digest()) != peer.card.digest():
                await self._refetch_card(peer)
        if peer.status != was:
            self._tell(peer_id, peer.status)

    async def _refetch_card(self, peer: Peer) -> None:
        """The peer's card changed (its reply names another digest): fetch and verify it, and admit it by the same route.

        mDNS re-announces a changed card and relays re-publish it, but a peer
        added by URL (`--peer`, `Node.add_peer`) has no such news, and peers
        follow a peer's tools and content by its card: without this, one that
        gained a tool or a resource would go unnoticed (for `--peer`, until its
        next periodic fetch). A failed fetch is tried again at the next ping.
        """
        route = _direct_route(peer)
        if route is None:
            return
        via, url = route
        try:
            card = await fetch_card(self._pool, url, mesh=self._mesh, member=self._member, expected_id=peer.id, check_address=via == "mdns")
        except Rejected as rejected:
            logger.debug("could not fetch the changed card of %s (%s): %s", peer.name, peer.id, rejected)
            return
        if peer.routes.get(via) == url:  # still the way to it
            self._peers.admit(card, via, url)

    def _tell(self, peer_id: str, status: Status) -> None:
        self._rumours.tell(peer_id, status)
        if status != "up":
            self._push = True
            self._wake.set()


def _count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


@asynccontextmanager
async def health_monitor(
    peers: PeerTable, *, self_id: str, interval: float, mesh: str | None = None, member: Member | None = None
) -> AsyncIterator[HealthMonitor]:
    """Node service: liveness pings among the peers in `peers` every `interval` s for the node's lifetime (`mesh`, `member`: to fetch changed cards)."""
    async with discovery_client(keepalive=KEEP_ALIVE_SECONDS / 2) as pool, anyio.create_task_group() as task_group:
        monitor = HealthMonitor(peers, pool, self_id=self_id, interval=interval, mesh=mesh, member=member)
        task_group.start_soon(monitor.run)
        yield monitor
        task_group.cancel_scope.cancel()
