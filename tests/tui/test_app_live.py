"""The TUI against real peers on loopback, driven headless with Textual's Pilot."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack

import pytest
from textual.pilot import Pilot
from textual.widgets import Markdown

from federation import CallFinished
from federation.card import PeerCard
from federation.node import Node
from tests.support.waiting import wait_until
from tui.app import MeshApp
from tui.screens.peer_detail import PeerDetailScreen
from tui.widgets.answer_pane import AnswerPane
from tui.widgets.call_log import CallLog
from tui.widgets.connection_bar import ConnectionBar
from tui.widgets.peers_table import PeersTable
from tui.widgets.prompt_box import PromptBox
from tui.widgets.topology import TopologyView

pytestmark = pytest.mark.anyio

Watch = Callable[..., AbstractAsyncContextManager[Pilot]]
StartNode = Callable[..., AbstractAsyncContextManager[Node]]


def table_names(pilot: Pilot) -> list[str]:
    """Peer names as the table shows them, top to bottom."""
    table = pilot.app.query_one(PeersTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


def table_status(pilot: Pilot, name: str) -> str:
    table = pilot.app.query_one(PeersTable)
    for i in range(table.row_count):
        cells = table.get_row_at(i)
        if str(cells[0]) == name:
            return str(cells[4])
    raise AssertionError(f"{name} is not in the table")


def admit(watched: Node, other: Node) -> None:
    """Put a real peer's real card in the watched node's table (what discovery does)."""
    watched.peers.admit(other.card(), "static", other.mcp_url)


async def test_peers_appear_in_the_table_as_they_are_admitted(start_node: StartNode, watch: Watch) -> None:
    async with start_node(name="watched") as watched, start_node(name="alice") as alice, start_node(name="bob") as bob:
        async with watch(watched) as pilot:
            assert table_names(pilot) == ["watched"]
            admit(watched, alice)
            await wait_until(lambda: "alice" in table_names(pilot), "alice in the table")
            admit(watched, bob)
            await wait_until(lambda: table_names(pilot) == ["watched", "alice", "bob"], "bob after alice")
            assert "3 peers" not in pilot.app.sub_title and "2 peers" in pilot.app.sub_title


async def test_a_peer_that_leaves_disappears_and_a_silent_one_is_marked_dead(start_node: StartNode, watch: Watch) -> None:
    async with start_node(name="watched", health_interval=0.2) as watched, start_node(name="alice") as alice:
        async with start_node(name="bob") as bob:
            admit(watched, alice)
            admit(watched, bob)
            async with watch(watched) as pilot:
                await wait_until(lambda: len(table_names(pilot)) == 3, "both peers listed")
                watched.peers.drop_route(alice.peer_id, "static")
                await wait_until(lambda: "alice" not in table_names(pilot), "alice gone")
        # bob stopped without a word: the watched node's health pings miss, and it is marked dead
        async with watch(watched) as pilot:
            await wait_until(lambda: "dead" in table_status(pilot, "bob"), "bob marked dead", timeout=15)


async def test_an_unreachable_node_is_reported_then_reconnected_when_it_returns(start_node: StartNode, watch: Watch) -> None:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(start_node(name="phoenix"))
        port = first.port
        async with watch(first) as pilot:
            bar = pilot.app.query_one(ConnectionBar)
            await stack.aclose()  # the node goes away
            await wait_until(lambda: bar.display and "cannot connect" in str(bar.render()), "an unreachable banner")
            assert "retrying" in str(bar.render()).lower()
            async with start_node(name="phoenix", port=port):
                await wait_until(lambda: not bar.display, "the banner gone after reconnecting")
                assert table_status(pilot, "phoenix").endswith("up")


async def test_enter_on_a_peer_opens_its_verified_card(start_node: StartNode, watch: Watch) -> None:
    async with start_node(name="watched") as watched, start_node(name="alice") as alice:
        admit(watched, alice)
        async with watch(watched) as pilot:
            await wait_until(lambda: "alice" in table_names(pilot), "alice listed")
            table = pilot.app.query_one(PeersTable)
            table.focus()
            for peer in (alice, watched):
                table.move_cursor(row=table_names(pilot).index(peer.name))
                await pilot.press("enter")
                await wait_until(lambda: isinstance(pilot.app.screen, PeerDetailScreen), "the detail screen")
                card = pilot.app.screen.query_one("#detail-card", Markdown)
                await wait_until(lambda: "signature verified" in card.source, f"{peer.name}'s verified card")  # noqa: B023 - awaited in this iteration
                assert f"# {peer.name} (`{peer.peer_id}`)" in card.source
                assert re.search(r"Signed by `\S+` on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", card.source), "the signing time reads as a date"
                assert not re.search(r"\d{10}\.\d", card.source), "no raw epoch seconds"
                await pilot.press("escape")
                await wait_until(lambda: not isinstance(pilot.app.screen, PeerDetailScreen), "back to the main screen")


async def test_a_hundred_peers_fit_an_80_by_24_terminal(start_node: StartNode, watch: Watch, signed_cards: Callable[[int], list[PeerCard]]) -> None:
    async with start_node(name="watched") as watched:
        async with watch(watched, size=(80, 24)) as pilot:
            for card in signed_cards(100):
                watched.peers.admit(card, "static", card.endpoints[0])
            table = pilot.app.query_one(PeersTable)
            await wait_until(lambda: table.row_count == 101, "all 101 rows", timeout=10)
            screen = pilot.app.screen.region
            for widget in (table, pilot.app.query_one(TopologyView), pilot.app.query_one(CallLog), pilot.app.query_one(PromptBox)):
                assert widget.region.area > 0 and screen.contains_region(widget.region), f"{widget} is cut off"
            assert "101 peers" in str(pilot.app.query_one(TopologyView).render())


async def test_a_prompt_streams_an_answer_and_the_call_log_records_it(model_node: Node, watch: Watch) -> None:
    async with watch(model_node) as pilot:
        app = pilot.app
        assert isinstance(app, MeshApp)
        pane = app.query_one(AnswerPane)
        shown: list[str] = []

        def saw(text: str) -> None:  # every state of the answer the user saw
            shown.append(text)

        app.watch(pane, "text", saw, init=False)  # before asking: a fast answer must not slip past
        await pilot.press("slash", *"Name a colour", "enter")

        def answered() -> bool:
            return "trace" in pane.status and not pane.status.startswith("asking")

        await wait_until(answered, "the answer finished", timeout=60)
        assert not pane.failed, pane.status
        assert f"by {model_node.name} ({model_node.peer_id[:8]})" in pane.status, "the footer names who answered"
        assert pane.text.strip(), "the answer is empty"
        partial = [text for text in shown if text]
        assert len(partial) >= 3, f"the answer did not stream: {partial}"
        assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(partial)), "the answer did not grow in place"
        log = app.query_one(CallLog)

        def logged_chat() -> bool:
            return any(c.info.tool == "chat" and isinstance(c.info, CallFinished) and c.info.outcome == "ok" and c.info.tokens_out > 0 for t in log.traces for c in t.calls)

        await wait_until(logged_chat, "a finished chat call in the log")
        (mine,) = [t for t in log.traces if t.key in app.own_traces]
        assert {"mesh_ask", "chat"} <= {c.info.tool for c in mine.calls}, "the routed ask and the model call share my trace"
        assert app.peer_rows[0].tokens_per_s is not None and app.peer_rows[0].calls_served >= 1
