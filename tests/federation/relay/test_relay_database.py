"""A relay's directory on a PostgreSQL server that goes away: tunnels carry on, the directory catches up when it returns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
import httpx
import pytest

import federation.relay.server
from federation.client import connect
from federation.const import PEERS_PATH
from federation.discovery.relay import relayed_url
from federation.node import Node
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from tests.support.postgres import PostgresServer
from tests.support.relay import AUTH, MESH_FIELDS, wait_attached
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


async def test_a_relay_that_loses_its_database_keeps_its_tunnels_and_catches_up_when_it_returns(
    make_settings: Callable[..., PeerSettings],
    tmp_path: Path,
    postgres_server: PostgresServer,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(federation.relay.server, "RELAY_PRESENCE_SECONDS", 0.2)  # the refresh that catches up, sooner
    async with Relay(RelaySettings(port=0, home=tmp_path / "a", db=postgres_url, **MESH_FIELDS)) as first, Relay(
        RelaySettings(port=0, home=tmp_path / "b", db=postgres_url, **MESH_FIELDS)
    ) as second, httpx.AsyncClient(headers=AUTH) as http:

        async def listed_by_second() -> set[str]:
            return {entry["card"]["id"] for entry in (await http.get(second.url + PEERS_PATH)).json()["peers"]}

        async def second_lists(expected: set[str]) -> bool:
            return await listed_by_second() == expected

        async with Node(make_settings(name="before", relays=[first.url], **MESH_FIELDS)) as before:
            await wait_attached(first.url, before.peer_id)
            await wait_until(lambda: second_lists({before.peer_id}), "the second relay lists the first one's peer")

            await anyio.to_thread.run_sync(postgres_server.stop)
            try:
                async with Node(make_settings(name="during", relays=[first.url], **MESH_FIELDS)) as during:
                    await wait_attached(first.url, during.peer_id)  # attached while its card could not be written
                    for peer in (before, during):
                        async with connect(relayed_url(first.url, peer.peer_id), headers=AUTH) as client:
                            assert (await client.list_tools()).tools, "the tunnels forward throughout the outage"
                    assert await listed_by_second() == set(), "no directory while the database is down, and no error either"
                    await anyio.to_thread.run_sync(postgres_server.start)
                    await wait_until(
                        lambda: second_lists({before.peer_id, during.peer_id}),
                        "the first relay re-publishes both cards once the database is back",
                    )
            finally:
                await anyio.to_thread.run_sync(postgres_server.start)  # a no-op when it runs: the session's other tests need it

