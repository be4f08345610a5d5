"""A card from a newer version, with fields this one does not know, passes through relays as sent and verifies at the peers reading it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from federation.card import ModelSummary, PeerCard, sign_card, verify_card
from federation.const import PEERS_PATH
from federation.identity import Identity
from federation.node import Node
from federation.relay.frames import Publish, encode_control
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from tests.support.cards import future_card, resign
from tests.support.relay import AUTH, MESH, MESH_FIELDS, attach_by_hand, raw_tunnel
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


async def test_a_newer_versions_card_is_listed_as_sent_here_and_by_a_sibling_relay_and_verifies(make_settings: Callable[..., PeerSettings], tmp_path: Path) -> None:
    newer = Identity.generate()
    model = ModelSummary(name="tiny", architecture="llama", quantization="Q8_0", size_bytes=1, sha256="ab" * 32, n_ctx=512)
    sent = future_card(sign_card(PeerCard(id="", name="newer", pubkey="", mesh=MESH.id, models=[model]), newer), newer)
    shared = f"sqlite:///{tmp_path / 'relays.db'}"
    async with Relay(RelaySettings(port=0, home=tmp_path / "a", db=shared, **MESH_FIELDS)) as first, Relay(
        RelaySettings(port=0, home=tmp_path / "b", db=shared, **MESH_FIELDS)
    ) as second, httpx.AsyncClient(headers=AUTH) as http, raw_tunnel(first.url) as ws:

        async def listed(relay: Relay, card: dict[str, Any], here: bool) -> bool:
            entries = (await http.get(relay.url + PEERS_PATH)).json()["peers"]
            return [(entry["card"], entry["here"]) for entry in entries] == [(card, here)]

        await attach_by_hand(ws, newer, sent)
        assert await listed(first, sent, here=True), "the card as sent, the fields unknown here included"
        await wait_until(lambda: listed(second, sent, here=False), "the sibling relay lists it from the shared directory, as sent")
        verify_card((await http.get(first.url + PEERS_PATH)).json()["peers"][0]["card"], expected_id=newer.peer_id, mesh=MESH.id)

        republished = resign(sent | {"future_field": {"x": 2}}, newer)
        await ws.send(encode_control(Publish(card=republished)))
        await wait_until(lambda: listed(first, republished, here=True), "a card published again is passed on as sent too")

        async with Node(make_settings(name="reader", relays=[first.url], **MESH_FIELDS)) as reader:
            await wait_until(lambda: newer.peer_id in reader.peers, "a peer reading the relay's /peers verifies the newer card and admits it", timeout=15)
