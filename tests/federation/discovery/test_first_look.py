"""A member's first look at the mesh (federation.discovery.ready): what it waits for before answering."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from federation.discovery.ready import first_look
from federation.node import Node
from federation.settings import PeerSettings
from federation.store import PeerRecord

pytestmark = pytest.mark.anyio

NOTES = Path(__file__).resolve().parents[3] / "examples" / "notes"


async def test_a_member_that_did_not_stop_cleanly_has_its_remembered_peers_back_before_it_answers(
    start_node: Any, make_settings: Callable[..., PeerSettings]
) -> None:
    """No mDNS, no --peer: only the stored table says whom to expect; the one still running is back, the other reported."""
    settings = make_settings(name="member")
    async with start_node(name="notes", notes=NOTES) as notes:
        async with start_node(name="gone") as gone, Node(settings) as before:
            await before.add_peer(notes.mcp_url)
            await before.add_peer(gone.mcp_url)
            rows: list[PeerRecord] = []

            async def both_stored() -> bool:
                rows[:] = await anyio.to_thread.run_sync(before.store.peers, before.peer_id)
                return len(rows) == 2

            with anyio.fail_after(10):
                while not await both_stored():
                    await anyio.sleep(0.05)
        left_behind = [PeerRecord.model_validate(row.model_dump()) for row in rows]
        await anyio.to_thread.run_sync(before.store.save_peers, before.peer_id, left_behind)  # what a killed run leaves
        async with Node(settings) as member:
            look = await first_look(member.peers, member.services)
            assert [p.name for p in look.peers] == ["notes"]
            assert "notes__search_notes" in {t.name for t in member.tools.tools}
            assert look.silent == ["gone"] and look.summary("member").endswith("; did not answer: gone")
