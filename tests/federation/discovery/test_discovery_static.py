"""`--peer URL`: a static peer is retried until it answers, then followed like any other."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import pytest

from federation.node import Node
from federation.settings import PeerSettings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _status(node: Node, peer_id: str) -> str | None:
    peer = node.peers.get(peer_id)
    return None if peer is None else peer.status


async def test_static_peer_admitted_when_it_appears_marked_dead_and_back(
    make_settings: Callable[..., PeerSettings], mesh: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="federation.discovery")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    fast = {"mesh": mesh, "health_interval": 0.2}
    async with Node(make_settings(name="seeker", peers=[url], **fast)) as seeker:
        await wait_until(lambda: any("unreachable" in r.getMessage() for r in caplog.records), "the missing static peer reported")
        async with Node(make_settings(name="target", port=port, **fast)) as target:
            await wait_until(lambda: _status(seeker, target.peer_id) == "up", "the static peer admitted once it answers")
            assert seeker.peers.get(target.peer_id).via == "static"  # type: ignore[union-attr]
        await wait_until(lambda: _status(seeker, target.peer_id) == "dead", "a stopped static peer marked dead (it sends no goodbye)")
        async with Node(make_settings(name="target", port=port, **fast)):
            await wait_until(lambda: _status(seeker, target.peer_id) == "up", "the static peer back up when it returns")
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1


async def test_static_peer_in_another_mesh_is_refused(make_settings: Callable[..., PeerSettings], mesh: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="federation.discovery")
    async with Node(make_settings(name="stranger", mesh="other")) as stranger:
        async with Node(make_settings(name="seeker", mesh=mesh, peers=[stranger.url])) as seeker:
            await wait_until(lambda: any("other-mesh" in r.getMessage() for r in caplog.records), "the foreign static peer refused")
            assert len(seeker.peers) == 0
