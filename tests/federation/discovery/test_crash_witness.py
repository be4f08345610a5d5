"""A crash is called dead once two peers missed it and one found nothing listening, without waiting for three misses."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from federation.discovery import HealthMonitor, health_monitor
from federation.events import EventBus
from federation.identity import Identity
from federation.listen import serve_app
from federation.peers import PeerTable
from tests.support.hostile import signed_card
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

_INTERVAL = 30.0
"""Long enough that no peer here can be missed three times (nor pinged a second time) while a test runs."""


def _closed_port() -> int:
    """A loopback port nothing listens on: a ping there is refused, as at a SIGKILLed peer."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _failing_health(request: Request) -> Response:
    return Response("overloaded", status_code=500)


@asynccontextmanager
async def _watching(url: str) -> AsyncIterator[tuple[PeerTable, HealthMonitor, str]]:
    """A peer table holding one peer at `url`, and a monitor that has pinged it once (its first round)."""
    me, other = Identity.generate(), Identity.generate()
    peers = PeerTable(EventBus(), me.peer_id)
    peers.admit(signed_card(other, mesh=None, endpoint=url + "/mcp", name="victim"), "static", url + "/mcp")
    async with health_monitor(peers, self_id=me.peer_id, interval=_INTERVAL) as monitor:
        await wait_until(lambda: peers.get(other.peer_id).status != "up", "the first ping missed")  # type: ignore[union-attr]
        yield peers, monitor, other.peer_id


async def test_a_refused_peer_another_peer_suspects_is_dead_at_once() -> None:
    async with _watching(f"http://127.0.0.1:{_closed_port()}") as (peers, monitor, victim):
        assert peers.get(victim).status == "suspect"  # type: ignore[union-attr]  # one miss: not dead by itself
        monitor.hear(f"suspect:{victim}")  # another peer's own miss, told on a ping
        assert peers.get(victim).status == "dead"  # type: ignore[union-attr]
        assert f"dead:{victim}" in monitor.news()  # and passed on as first-hand news


async def _told_first(url: str, news: str) -> str:
    """The status of a peer at `url` that this peer heard `news` ("<status>:{victim}") about before pinging it: after that one ping."""
    me, other = Identity.generate(), Identity.generate()
    peers = PeerTable(EventBus(), me.peer_id)
    async with health_monitor(peers, self_id=me.peer_id, interval=_INTERVAL) as monitor:
        await wait_until(lambda: monitor.rounds >= 1, "the first round (of nobody) done")
        peers.admit(signed_card(other, mesh=None, endpoint=url + "/mcp", name="victim"), "static", url + "/mcp")
        monitor.hear(news.format(victim=other.peer_id))  # not pinged yet: the news is the reason to
        await wait_until(lambda: peers.get(other.peer_id).status != "up", "the peer pinged once")  # type: ignore[union-attr]
        assert monitor.rounds == 1 and monitor.pings == 1  # one ping prompted by the news, not rounds of misses
        return peers.get(other.peer_id).status  # type: ignore[union-attr]


async def test_a_peer_told_of_a_suspect_pings_it_and_a_refusal_makes_it_dead() -> None:
    assert await _told_first(f"http://127.0.0.1:{_closed_port()}", "suspect:{victim}") == "dead"


async def test_an_odd_answer_stays_one_miss_whoever_called_the_peer_dead() -> None:
    app = Starlette(routes=[Route("/health", _failing_health)])
    async with serve_app(app, lifespan="off", timeout_graceful_shutdown=0) as url:
        assert await _told_first(url, "dead:{victim}") == "suspect"  # something answers there: busy or broken, not gone
