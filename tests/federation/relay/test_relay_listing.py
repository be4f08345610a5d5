"""The relay's `/peers` with an ETag: an unchanged directory is a 304, a changed one the same body a full read gives."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest

from federation.node import Node
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from tests.support.relay import AUTH, MESH_FIELDS, wait_attached
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    async with Relay(RelaySettings(port=0, home=tmp_path / "relay", **MESH_FIELDS)) as running:
        yield running


async def test_an_unchanged_directory_is_not_sent_again_and_a_changed_one_matches_a_full_read(make_settings: Callable[..., PeerSettings], relay: Relay) -> None:
    peers_url = relay.url + "/peers"
    async with httpx.AsyncClient(trust_env=False, headers=AUTH) as http, Node(make_settings(name="first", relays=[relay.url], **MESH_FIELDS)) as first:
        await wait_attached(relay.url, first.peer_id)
        full = await http.get(peers_url)
        etag = full.headers["etag"]
        again = await http.get(peers_url, headers={"If-None-Match": etag})
        assert (again.status_code, again.content) == (304, b"")
        async with Node(make_settings(name="second", relays=[relay.url], **MESH_FIELDS)) as second:
            await wait_attached(relay.url, second.peer_id)
            changed = await http.get(peers_url, headers={"If-None-Match": etag})
            assert changed.status_code == 200 and changed.headers["etag"] != etag
            assert changed.json() == (await http.get(peers_url)).json(), "the same view as a reader that sends no tag"
            assert {p["card"]["name"] for p in changed.json()["peers"]} == {"first", "second"}
            await wait_until(lambda: second.peer_id in first.peers and first.peer_id in second.peers, "the peers learn each other through the tagged reads", timeout=15)
            stale = changed.headers["etag"]
        with anyio.fail_after(10):
            while (await http.get(peers_url, headers={"If-None-Match": stale})).status_code == 304:  # the second left
                await anyio.sleep(0.05)
        assert [p["card"]["name"] for p in (await http.get(peers_url)).json()["peers"]] == ["first"]
