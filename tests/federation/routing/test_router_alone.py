"""The router is built from the parts it uses (no `Node`): a tool host, a peer table, an event bus, a forwarder."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.events import EventBus
from federation.identity import Identity
from federation.peers import PeerTable
from federation.routing import CallLedger, Forwarder, Router
from federation.settings import PeerSettings
from federation.store import Store, database_url
from federation.toolhost import ToolHost

pytestmark = pytest.mark.anyio


async def test_a_router_without_a_node_offers_the_mesh_tools_and_knows_itself(tmp_path: Path) -> None:
    identity = Identity.generate()
    events = EventBus()
    peers = PeerTable(events, identity.peer_id)
    tools = ToolHost("alone", version="0", instructions="", identity=identity)
    async with Store(database_url(tmp_path), identity) as store:
        ledger = CallLedger(store=store, events=events, peer_id=identity.peer_id)
        async with Forwarder(peers=peers, ledger=ledger, identity=identity, settings=PeerSettings(home=tmp_path)) as forwarder:
            async with Router(peer_id=identity.peer_id, name="alone", peers=peers, events=events, forwarder=forwarder, tools=tools) as router:
                assert {"mesh_peers", "mesh_ask", "mesh_call", "mesh_fan_out"} <= {t.name for t in tools.tools}
                assert router.is_self("alone") and router.is_self(identity.peer_id[:6]) and not router.is_self("other")
                assert router.settled()
