"""Peers sharing one address with many open connections still meet through a relay (issue 15, 50+ peers on one host).

Every light peer on a host (or behind one NAT) reaches the relay from the
same address, and each holds a session with every other through it. With a
per-address cap at the relay (512, a peer's default), 50 peers on one host
filled it, and the last to attach had every `/peers` read refused: they
listed no one while everyone listed them. The crowd here stands for those
sessions: more connections from 127.0.0.1 than that cap, held open.
"""

from __future__ import annotations

import resource
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest

from federation.const import MAX_CONNECTIONS_PER_ADDRESS
from federation.node import Node
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from tests.support.relay import MESH_FIELDS, wait_attached
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

_CROWD = MAX_CONNECTIONS_PER_ADDRESS + 64


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    """A relay with its default limits, but a header timeout long enough that the idle crowd stays for the whole test."""
    async with Relay(RelaySettings(port=0, home=tmp_path / "relay", header_timeout=600, **MESH_FIELDS)) as running:
        yield running


async def test_peers_on_a_crowded_address_attach_and_list_each_other(make_settings: Callable[..., PeerSettings], relay: Relay) -> None:
    async with AsyncExitStack() as crowd:
        for _ in range(_CROWD):
            await crowd.enter_async_context(await anyio.connect_tcp("127.0.0.1", relay.port))
        first_settings = make_settings(name="first", relays=[relay.url], **MESH_FIELDS)
        second_settings = make_settings(name="second", relays=[relay.url], **MESH_FIELDS)
        async with Node(first_settings) as first, Node(second_settings) as second:
            await wait_attached(relay.url, first.peer_id, timeout=20)
            await wait_attached(relay.url, second.peer_id, timeout=20)
            await wait_until(lambda: second.peer_id in first.peers and first.peer_id in second.peers, "each lists the other through the relay", timeout=20)


def test_a_relay_caps_one_address_at_half_the_open_files_it_may_hold() -> None:
    """No cap at all would let one address take every file descriptor; half leaves the rest to everyone else."""
    limits = RelaySettings(port=0).connection_limits()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY, "the relay raises its soft limit to the hard one"
    assert limits.max_per_address == max(MAX_CONNECTIONS_PER_ADDRESS, soft // 2)
    assert RelaySettings(port=0, max_connections_per_address=0).connection_limits().max_per_address == 0, "0 still means no cap"
