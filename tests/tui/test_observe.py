"""`mcpfed tui --observe`: the TUI runs a light peer of its own and watches it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from federation.node import Node
from federation.settings import PeerSettings
from tests.support.tui import app_for
from tests.support.waiting import wait_until
from tui.observer import observer_node, observer_settings
from tui.widgets.answer_pane import AnswerPane
from tui.widgets.peers_table import PeersTable

pytestmark = pytest.mark.anyio


async def test_the_observer_is_a_modelless_peer_with_its_own_identity(make_settings: Callable[..., PeerSettings]) -> None:
    base = make_settings(name="laptop", mesh="home", mesh_secret="s3cret")
    async with observer_node(observer_settings(base)) as observer, Node(base) as served:
        assert observer.engine is None and observer.tools.local_tools == []  # only the mesh's tools
        assert observer.peer_id != served.peer_id  # same machine, same state dir: still two peers
        assert (observer.settings.mesh, observer.settings.mesh_secret) == ("home", "s3cret")
        assert observer.name.endswith("-tui")


async def test_peers_admitted_to_the_observer_show_in_its_table(
    make_settings: Callable[..., PeerSettings], start_node: Callable[..., AbstractAsyncContextManager[Node]]
) -> None:
    async with observer_node(observer_settings(make_settings(name="me"))) as observer, start_node(name="alice") as alice:
        app = app_for(observer.url)
        async with app.run_test(size=(100, 30)):
            table = app.query_one(PeersTable)
            await wait_until(lambda: table.row_count == 1, "the observer's own row")
            assert str(table.get_row_at(0)[0]).endswith("-tui")
            observer.peers.admit(alice.card(), "mdns", alice.mcp_url)
            await wait_until(lambda: table.row_count == 2, "alice in the observer's table")
            assert str(table.get_row_at(1)[2]) == "mdns"


async def test_asking_a_mesh_without_any_model_says_so(make_settings: Callable[..., PeerSettings]) -> None:
    async with observer_node(observer_settings(make_settings(name="me"))) as observer:
        app = app_for(observer.url)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("slash", *"hello", "enter")
            pane = app.query_one(AnswerPane)
            await wait_until(lambda: pane.failed, "the prompt failing")
            assert "no peer that is up serves a model" in pane.status
