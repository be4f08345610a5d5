"""`mcpfed tui`: the mesh, live, in a terminal.

`MeshApp` watches one node through a `Feed` (its `/events` stream) and asks
through an `Asker` (its `/mcp`). Every feed item is folded into a
`MeshState`; the app then hands the widgets fresh immutable views through
reactives (at most every `FLUSH_SECONDS`, so a burst of events is one
redraw). Widgets report back with messages (`PeerChosen`, `Asked`); slow work
(the feed, a prompt, a card fetch) runs in exclusive workers, never on the
UI's path.

`run()` is what the CLI calls: attach to a node by URL (a relay's
`/p/<peer-id>` URL too), or with `observe=True` start a light in-process peer
(no model) and watch that one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import tzinfo
from functools import partial
from typing import ClassVar

import anyio
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.reactive import reactive
from textual.widgets import Footer, Header
from textual.worker import Worker

from federation import ANSWER_RESTARTS_PREFIX, FederationError, PeerCard, PeerSettings, auth_headers
from tui.address import NodeAddress, card_url_for
from tui.asking import Asker, MeshAsker, new_trace_id
from tui.commands import Command, MeshCommands
from tui.feed import Feed, HttpFeed, fetch_card
from tui.observer import mesh_settings, observer_node, observer_settings
from tui.screens.help import HelpScreen
from tui.screens.peer_detail import PeerDetailScreen
from tui.state import Clock, ConnectionState, LoggedTrace, MeshState, PeerLine, Topology
from tui.widgets.answer_pane import AnswerPane
from tui.widgets.call_log import CallLog
from tui.widgets.connection_bar import ConnectionBar
from tui.widgets.peers_table import COLUMN_KEYS, PeersTable
from tui.widgets.prompt_box import PromptBox
from tui.widgets.topology import TopologyView
from tui.wire import FeedItem

__all__ = ["DEFAULT_NODE_URL", "FLUSH_SECONDS", "MeshApp", "build_app", "run"]

DEFAULT_NODE_URL = "http://127.0.0.1:8801"

FLUSH_SECONDS = 0.1
"""Longest an event waits before the screen shows it; events within this window share one redraw."""


class MeshApp(App[None]):
    """The mesh dashboard for one watched node."""

    CSS_PATH = "app.tcss"
    TITLE = "mcpfed"
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (120, "-wide")]  # type: ignore[misc]  # textual declares it `ClassVar[...] | None`, which mypy reads as an instance variable
    COMMANDS = App.COMMANDS | {MeshCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("slash", "focus_prompt", "Ask"),
        Binding("m", "toggle_maximize", "Maximize"),
        Binding("t", "toggle_theme", "Theme"),
        Binding("r", "reconnect", "Reconnect", show=False),
    ]

    connection: reactive[ConnectionState] = reactive(ConnectionState, init=False)
    peer_rows: reactive[tuple[PeerLine, ...]] = reactive(tuple, init=False)
    traces: reactive[tuple[LoggedTrace, ...]] = reactive(tuple, init=False)
    names: reactive[dict[str, str]] = reactive(dict, init=False)
    own_traces: reactive[frozenset[str]] = reactive(frozenset, init=False)
    topology: reactive[Topology | None] = reactive(None, init=False)

    def __init__(
        self,
        feed: Feed,
        asker: Asker,
        *,
        url: str,
        card_headers: dict[str, str] | None = None,
        clock: Clock = time.time,
        tz: tzinfo | None = None,
        trace_ids: Callable[[], str] = new_trace_id,
    ) -> None:
        super().__init__()
        self._trace_ids = trace_ids
        self._feed = feed
        self._asker = asker
        self._url = url
        self._card_headers = dict(card_headers or {})
        self._clock = clock
        self._tz = tz
        self.state = MeshState(url, clock=clock)
        self._redraw_pending = False
        self._dropped_seen = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield ConnectionBar(id="connection").data_bind(MeshApp.connection)
        with Container(id="panes"):
            yield PeersTable(id="peers").data_bind(MeshApp.peer_rows)
            yield TopologyView(id="topology", clock=self._clock).data_bind(MeshApp.topology)
            yield CallLog(id="calls", tz=self._tz).data_bind(MeshApp.traces, MeshApp.names, MeshApp.own_traces)
            yield AnswerPane(id="answer")
        yield PromptBox(id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        titles = {"#peers": "peers", "#topology": "topology", "#calls": "calls", "#answer": "answer"}
        for selector, title in titles.items():
            self.query_one(selector).border_title = title
        self.sub_title = self._url
        self._show_state()
        self.query_one(PeersTable).focus()
        self._follow_feed()

    # -- the feed ------------------------------------------------------------
    @work(exclusive=True, group="feed")
    async def _follow_feed(self) -> None:
        await self._feed.run(self.ingest)

    def ingest(self, item: FeedItem) -> None:
        """Fold one feed item into the state; the screen catches up within `FLUSH_SECONDS`."""
        self.state.apply(item)
        if not self._redraw_pending:
            self._redraw_pending = True
            self.set_timer(FLUSH_SECONDS, self._show_state)

    def _show_state(self) -> None:
        self._redraw_pending = False
        state = self.state
        self.connection = state.connection
        self.names = state.names()
        self.peer_rows = state.peer_rows()
        self.traces = state.traces()
        self.topology = state.topology()
        if state.card is not None:
            count = len(state.peers)
            self.sub_title = f"{state.card.name} ({state.card.id}) · {count} peer{'' if count == 1 else 's'} · {self._url}"
        if state.dropped > self._dropped_seen:
            self.notify(f"the node dropped {state.dropped - self._dropped_seen} events for us; figures catch up at the next refresh")
            self._dropped_seen = state.dropped

    # -- asking ------------------------------------------------------------
    @on(PromptBox.Asked)
    def _asked(self, event: PromptBox.Asked) -> None:
        pane = self.query_one(AnswerPane)
        self.screen.add_class("-answering")
        trace_id = self._trace_ids()
        self.own_traces = self.own_traces | {trace_id}
        pane.text, pane.failed, pane.status = "", False, f"asking… (trace {trace_id[:8]})"
        self._ask(event.prompt, trace_id)

    @work(exclusive=True, group="ask")
    async def _ask(self, prompt: str, trace_id: str) -> None:
        pane = self.query_one(AnswerPane)

        async def stream(piece: str) -> None:
            if piece.startswith(ANSWER_RESTARTS_PREFIX):  # the peer died mid-answer: what streamed so far is void
                pane.text, pane.status = "", piece.removeprefix(ANSWER_RESTARTS_PREFIX).strip()
            else:
                pane.text += piece

        try:
            answer = await self._asker.ask(prompt, stream, trace_id=trace_id)
        except FederationError as exc:
            pane.failed, pane.status = True, f"failed: {exc}"
            return
        if not pane.text:
            pane.text = answer.text
        usage = answer.details.get("usage") if isinstance(answer.details.get("usage"), dict) else {}
        peer_id, peer_name = answer.details.get("peer"), answer.details.get("peer_name")
        figures = [answer.tool]
        if isinstance(peer_id, str):
            figures.append(f"by {peer_name} ({peer_id[:8]})" if isinstance(peer_name, str) else f"by {peer_id[:8]}")
        if usage:
            figures.append(f"{usage.get('completion_tokens', '?')} tok, {usage.get('tokens_per_s', '?')} tok/s")
        pane.status = " · ".join([*figures, f"trace {trace_id[:8]}"])

    # -- peers ---------------------------------------------------------------
    @on(PeersTable.PeerChosen)
    def _peer_chosen(self, event: PeersTable.PeerChosen) -> None:
        self.open_peer(event.peer_id)

    def open_peer(self, peer_id: str) -> None:
        row = next((r for r in self.peer_rows if r.id == peer_id), None)
        if row is None:
            self.notify(f"peer {peer_id[:8]} is no longer in the table", severity="warning")
            return
        self.push_screen(PeerDetailScreen(row, self.state.calls_of(peer_id), self.state.names(), fetch_card=self._fetch_card, tz=self._tz))

    async def _fetch_card(self, row: PeerLine) -> PeerCard:
        """The watched node's card from the URL we reach it by; another peer's from beside its MCP URL."""
        url = NodeAddress(self._url).card if row.is_self else card_url_for(row.url)
        return await fetch_card(url, self._card_headers)

    def sort_peers(self, column: str) -> None:
        self.query_one(PeersTable).sort_column = column

    # -- actions -------------------------------------------------------------
    def action_help(self) -> None:
        sections = [("everywhere", self.BINDINGS), ("peers", PeersTable.BINDINGS), ("calls", CallLog.BINDINGS)]
        self.push_screen(HelpScreen(sections))

    def action_focus_prompt(self) -> None:
        self.query_one(PromptBox).focus()

    def action_focus_panes(self) -> None:
        self.query_one(PeersTable).focus()

    def action_toggle_maximize(self) -> None:
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
        elif screen.focused is not None and screen.focused.parent is self.query_one("#panes"):
            screen.maximized = screen.focused

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def action_reconnect(self) -> Worker[None]:
        return self._follow_feed()

    def palette_commands(self) -> list[Command]:
        commands: list[Command] = [
            ("Reconnect now", "Drop the stream and connect to the node again", self.action_reconnect),
            ("Ask the mesh", "Focus the prompt box", self.action_focus_prompt),
            ("Toggle dark/light", "Switch between the dark and light built-in themes", self.action_toggle_theme),
        ]
        commands += [(f"Sort peers by {key}", "Order the peers table by this column", partial(self.sort_peers, key)) for key in COLUMN_KEYS]
        commands += [
            (f"Open peer {row.name} ({row.id[:6]})", f"{row.status} via {row.via}", partial(self.open_peer, row.id))
            for row in self.peer_rows
        ]
        return commands


def build_app(address: NodeAddress, headers: dict[str, str]) -> MeshApp:
    """The app watching the node at `address`, asking through it."""
    feed = HttpFeed(address, headers=headers)
    return MeshApp(feed, MeshAsker(address.mcp, headers=headers), url=address.base, card_headers=headers)


def run(node_url: str | None = None, *, observe: bool = False, token: str | None = None, mesh: str | None = None) -> None:
    """Run the TUI until the user quits (the CLI's `mcpfed tui`); bad input raises `ConfigError`.

    `mesh` is the mesh the observer peer joins (`--observe`); the stored one by default.
    """
    settings = mesh_settings(token, mesh)
    headers = auth_headers(settings)
    if observe:
        anyio.run(_observe, observer_settings(settings), headers)
    else:
        build_app(NodeAddress.parse(node_url or DEFAULT_NODE_URL), headers).run()


async def _observe(settings: PeerSettings, headers: dict[str, str]) -> None:
    async with observer_node(settings) as node:
        await build_app(NodeAddress.parse(node.url), headers).run_async()
