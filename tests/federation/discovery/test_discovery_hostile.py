"""Hostile and broken announcements: never admitted, each reported once, and discovery goes on.

The attackers are real: a raw `AsyncZeroconf` on loopback announces crafted
instances in the test's mesh, pointing at tiny Starlette apps that serve
crafted cards (or hang, or are not there at all).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from zeroconf.asyncio import AsyncServiceInfo

from federation.card import PeerCard
from federation.const import SERVICE_TYPE
from federation.discovery import MdnsDiscovery
from federation.discovery.hint import mesh_tag, txt_record
from federation.identity import Identity
from federation.listen import serve_app
from federation.node import Node
from tests.support.hostile import Announcer, rejections, signed_card
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

StartNode = Callable[..., AbstractAsyncContextManager[Node]]


@dataclass
class FakePeer:
    """A Starlette app answering `GET /peer` with whatever card body it is given."""

    body: bytes = b""
    delay: float = 0.0
    hits: int = 0
    port: int = 0
    released: anyio.Event = field(default_factory=anyio.Event)

    @property
    def mcp_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def _peer(self, request: Request) -> Response:
        self.hits += 1
        with anyio.move_on_after(self.delay):
            await self.released.wait()  # a hanging peer, let go when the test ends
        return Response(self.body, media_type="application/json")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/peer", self._peer)])


@asynccontextmanager
async def fake_peer(delay: float = 0.0) -> AsyncIterator[FakePeer]:
    fake = FakePeer(delay=delay)
    async with serve_app(fake.app(), lifespan="off", timeout_graceful_shutdown=0) as url:
        fake.port = httpx.URL(url).port or 0
        try:
            yield fake
        finally:
            fake.released.set()


def discovery_of(node: Node) -> MdnsDiscovery:
    return next(s for s in node.services if isinstance(s, MdnsDiscovery))


@pytest.fixture(autouse=True)
def _log_discovery(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="federation.discovery")


async def test_spoofed_forged_foreign_and_replayed_cards_are_rejected_once_each(
    mdns_node: StartNode, announcer: Announcer, mesh: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with mdns_node(name="guard") as guard, mdns_node(name="victim", mdns="off") as victim:
        async with fake_peer() as spoof, fake_peer() as forged, fake_peer() as foreign, fake_peer() as replay:
            claimed, actual = Identity.generate(), Identity.generate()
            spoof.body = signed_card(actual, mesh=mesh, endpoint=spoof.mcp_url).model_dump_json().encode()
            tampered = signed_card(Identity.generate(), mesh=mesh, endpoint=forged.mcp_url).model_copy(update={"name": "guard"})
            forged.body = tampered.model_dump_json().encode()
            outsider = signed_card(Identity.generate(), mesh="another-mesh", endpoint=foreign.mcp_url)
            foreign.body = outsider.model_dump_json().encode()
            async with httpx.AsyncClient() as http:
                replay.body = (await http.get(victim.url + "/peer")).content  # a genuine card, served from elsewhere

            def hint_for(card: PeerCard) -> dict[str, str | bytes]:
                return txt_record(card, "/mcp") | {"mesh": mesh_tag(mesh)}

            cases = {
                await announcer.announce("spoof", spoof.port, hint_for(signed_card(claimed, mesh=mesh, endpoint=spoof.mcp_url))): ("spoofed-id", spoof),
                await announcer.announce("forged", forged.port, hint_for(tampered)): ("bad-card", forged),
                await announcer.announce("foreign", foreign.port, hint_for(outsider)): ("other-mesh", foreign),
                await announcer.announce("replay", replay.port, hint_for(victim.card())): ("address-mismatch", replay),
            }
            expected = sorted((name, reason) for name, (reason, _) in cases.items())
            await wait_until(lambda: sorted(rejections(caplog)) == expected, f"each hostile instance rejected with its reason: {expected}")

            for name, (_, fake) in cases.items():  # a new card digest makes discovery look again...
                txt = dict(announcer.infos[name].properties) | {b"cd": b"0123456789ab"}
                await announcer.announce(name.split(".")[0], fake.port, txt)  # type: ignore[arg-type]
            await wait_until(lambda: all(fake.hits >= 2 for _, fake in cases.values()), "every hostile card re-fetched after its digest changed")

            async with mdns_node(name="friend") as friend:
                await wait_until(lambda: friend.peer_id in guard.peers, "an honest peer is still admitted")
                assert {p.id for p in guard.peers} == {friend.peer_id}
            assert sorted(rejections(caplog)) == expected  # ...but reports each (peer, reason) only once


async def test_malformed_txt_records_are_rejected_without_fetching(mdns_node: StartNode, announcer: Announcer, mesh: str, caplog: pytest.LogCaptureFixture) -> None:
    good = {"id": "a" * 16, "mesh": mesh_tag(mesh), "path": "/mcp", "v": "1", "cd": "0" * 12}
    broken: dict[str, dict[str, str | bytes]] = {
        "no-id": {k: v for k, v in good.items() if k != "id"},
        "bad-id": good | {"id": "NOT-AN-ID!"},
        "bad-path": good | {"path": "mcp; rm -rf"},
        "bad-digest": good | {"cd": "zz"},
        "bad-version": good | {"v": "one"},
        "binary": good | {"id": b"\xff\xfe" * 8},
    }
    async with mdns_node(name="guard") as guard, fake_peer() as target:
        names = [await announcer.announce(instance, target.port, txt) for instance, txt in broken.items()]
        await wait_until(lambda: sorted(rejections(caplog)) == sorted((n, "malformed-txt") for n in names), "every malformed record reported")
        async with mdns_node(name="friend") as friend:
            await wait_until(lambda: friend.peer_id in guard.peers, "an honest peer is still admitted")
            assert {peer.id for peer in guard.peers} == {friend.peer_id}  # and none of the broken hints
        assert target.hits == 0  # nothing was fetched on the strength of a broken hint


async def test_unreachable_and_slow_peers_do_not_stall_discovery(
    mdns_node: StartNode, announcer: Announcer, mesh: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("federation.discovery.admission.CARD_FETCH_TIMEOUT_SECONDS", 4.0)  # room for a loaded CI box
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    async with mdns_node(name="guard") as guard, fake_peer(delay=30) as slow:
        ghost = signed_card(Identity.generate(), mesh=mesh, endpoint=f"http://127.0.0.1:{dead_port}/mcp")
        sloth = signed_card(Identity.generate(), mesh=mesh, endpoint=slow.mcp_url)
        slow.body = sloth.model_dump_json().encode()
        ghost_name = await announcer.announce("ghost", dead_port, txt_record(ghost, "/mcp"))
        sloth_name = await announcer.announce("sloth", slow.port, txt_record(sloth, "/mcp"))
        await wait_until(lambda: slow.hits >= 1, "the slow peer's card requested")

        async with mdns_node(name="friend") as friend:
            await wait_until(lambda: friend.peer_id in guard.peers, "an honest peer admitted", timeout=4.0)
            assert (sloth_name, "timeout") not in rejections(caplog)  # admitted while the slow fetch still hung
            await wait_until(lambda: (sloth_name, "timeout") in rejections(caplog), "the hanging fetch given up on", timeout=8.0)
        assert (ghost_name, "unreachable") in rejections(caplog)
        assert rejections(caplog).count((ghost_name, "unreachable")) == 1  # retried with backoff meanwhile, reported once
        assert {p.id for p in guard.peers} <= {friend.peer_id}


async def test_announcement_flood_is_bounded(
    mdns_node: StartNode, announcer: Announcer, mesh: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("federation.discovery.mdns.DISCOVERY_MAX_INSTANCES", 40)
    monkeypatch.setattr("federation.discovery.mdns.DISCOVERY_QUEUE_LIMIT", 8)
    async with mdns_node(name="guard") as guard:
        discovery = discovery_of(guard)
        most_tracked = 0
        for i in range(150):
            junk = txt_record(signed_card(Identity.generate(), mesh=mesh, endpoint="http://127.0.0.1:9/mcp"), "/mcp")
            await announcer.announce(f"junk{i}", 9, junk if i % 2 else junk | {"cd": "?"})
            most_tracked = max(most_tracked, discovery.tracked)
            await anyio.sleep(0)
        async with mdns_node(name="friend") as friend:
            await wait_until(lambda: friend.peer_id in guard.peers, "an honest peer admitted after the flood", timeout=10.0)
        assert most_tracked <= 40 and discovery.tracked <= 40
        assert {p.id for p in guard.peers} <= {friend.peer_id}  # no junk got in
        floods = [r for r in rejections(caplog) if r[1] in ("flood", "busy")]
        assert len(floods) == len(set(floods)) >= 1  # the flood was reported, once per kind
        async with httpx.AsyncClient() as http:
            assert (await http.get(guard.url + "/health")).json()["ok"]


async def test_a_peer_whose_announcement_was_missed_is_found_by_the_periodic_query(
    mdns_node: StartNode, announcer: Announcer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance that answers queries but never announces (as if its announcement was lost)."""
    monkeypatch.setattr("zeroconf._services.browser.STARTUP_QUERIES", 1)  # as zeroconf's own tests shrink timings
    monkeypatch.setattr("federation.discovery.mdns.MDNS_REQUERY_SECONDS", 0.5)
    async with mdns_node(name="guard") as guard, mdns_node(name="quiet", mdns="off") as quiet:
        await anyio.sleep(0.3)  # the guard's one start-up query has gone out
        await announcer.zc.zeroconf.async_wait_for_start()
        info = AsyncServiceInfo(
            SERVICE_TYPE, f"quiet-x.{SERVICE_TYPE}", addresses=[socket.inet_aton("127.0.0.1")], port=quiet.port, properties=txt_record(quiet.card(), "/mcp"), server="quiet-x.local."
        )
        announcer.zc.zeroconf.registry.async_add(info)  # answers queries, announces nothing
        await wait_until(lambda: quiet.peer_id in guard.peers, "the silent peer found by a later query", timeout=5.0)
