"""Keys, palette and panes on the fixed mesh (no network): what a user's keystrokes do."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from textual.widgets import Markdown

from tests.support.waiting import wait_until
from tui.app import MeshApp
from tui.screens.help import HelpScreen
from tui.screens.peer_detail import PeerDetailScreen
from tui.widgets.call_log import CallLog
from tui.widgets.peers_table import PeersTable
from tui.widgets.topology import TopologyView

sys.path.insert(0, str(Path(__file__).parent / "snapshot_apps"))
from fixed_mesh import make_app

pytestmark = pytest.mark.anyio


def names(app: MeshApp) -> list[str]:
    table = app.query_one(PeersTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


async def test_s_cycles_the_sort_column_and_the_cursor_stays_on_its_peer() -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(lambda: len(names(app)) == 5, "the fixed peers")
        assert names(app) == ["atlas", "borealis", "cirrus", "dynamo", "eowind"]
        table = app.query_one(PeersTable)
        table.move_cursor(row=names(app).index("eowind"))
        for _ in range(["name", "id", "via", "model", "status"].index("status")):
            await pilot.press("s")
        assert table.sort_column == "status"
        assert names(app)[-1] == "dynamo" and names(app)[-2] == "cirrus"  # up, then suspect, then dead
        assert names(app)[table.cursor_row] == "eowind"
        await pilot.press("S")
        assert names(app)[0] == "dynamo"


async def test_question_mark_lists_every_key_and_escape_closes_it() -> None:
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.query_one(Markdown).source
        for description in ("Quit", "Sort", "Maximize", "Theme", "Reconnect", "Open peer", "command palette"):
            assert description in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_t_switches_between_dark_and_light_themes() -> None:
    app = make_app()
    async with app.run_test() as pilot:
        assert app.current_theme.dark
        await pilot.press("t")
        assert not app.current_theme.dark
        await pilot.press("t")
        assert app.current_theme.dark


async def test_m_maximizes_the_focused_pane_and_restores_it() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("tab")  # from the peers table to the call log
        log = app.query_one(CallLog)
        assert app.focused is log
        await pilot.press("m")
        assert app.screen.maximized is log and log.region.height > 15
        await pilot.press("m")
        assert app.screen.maximized is None


async def test_enter_expands_a_workflow_into_its_calls() -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        log = app.query_one(CallLog)
        await wait_until(lambda: len(log.root.children) == 4, "four traces")
        workflow = next(n for n in log.root.children if n.data is not None and n.data.info.tool == "mesh_fan_out")
        log.focus()
        log.move_cursor(workflow)
        await pilot.press("enter")
        assert workflow.is_expanded and [c.data.info.tool for c in workflow.children] == ["chat", "chat"]  # type: ignore[union-attr]


async def test_the_command_palette_opens_a_peer() -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(lambda: len(names(app)) == 5, "the fixed peers")
        await pilot.press("ctrl+p", *"open peer boreal")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, PeerDetailScreen), "borealis' detail screen")
        assert app.screen.row.name == "borealis"  # type: ignore[attr-defined]


async def test_the_topology_marks_the_watched_node_and_labels_every_peer() -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)):
        view = app.query_one(TopologyView)
        await wait_until(lambda: "◉" in str(view.render()), "the watched node on the ring")
        drawn = str(view.render())
        for name in ("atlas", "borealis", "cirrus", "dynamo", "eowind"):
            assert name in drawn
        assert any(0x2800 < ord(ch) <= 0x28FF for ch in drawn), "no edges or ring drawn"
