"""How the TUI folds what the node says into what it shows (no screen, no network)."""

from __future__ import annotations

from datetime import UTC

from rich.style import Style

from federation import CallFinished, CallStarted, PeerCard, PeerDown, PeerRow
from tui.state import EDGE_TTL, MAX_TRACES, MeshState
from tui.widgets.call_log import call_line
from tui.wire import Connected, Disconnected, node_event

SELF = PeerCard(id="selfselfselfself", name="atlas", pubkey="")
OTHER = PeerRow(id="otherotherother1", name="borealis", via="mdns", latency_ms=2.5)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def connected_state(clock: Clock | None = None) -> MeshState:
    state = MeshState("http://node", clock=clock or Clock())
    state.apply(Connected(card=SELF, peers=(OTHER,), calls_served=5))
    return state


def started(tool: str, callee: str, trace: str | None = None, caller: str | None = None) -> CallStarted:
    return CallStarted(tool=tool, callee=callee, trace_id=trace, caller=caller, at=1.0)


def finished(tool: str, callee: str, trace: str | None = None, caller: str | None = None, outcome: str = "ok", **rest: object) -> CallFinished:
    return CallFinished(tool=tool, callee=callee, trace_id=trace, caller=caller, at=2.0, outcome=outcome, **rest)  # type: ignore[arg-type]


def down(peer: PeerRow, reason: str) -> PeerDown:
    return PeerDown(**peer.model_dump(), reason=reason)  # type: ignore[arg-type]


def row(state: MeshState, peer_id: str):  # type: ignore[no-untyped-def]
    return next(r for r in state.peer_rows() if r.id == peer_id)


def test_the_watched_node_is_the_first_row_and_counts_calls_it_serves() -> None:
    state = connected_state()
    state.apply(started("chat", SELF.id))
    assert row(state, SELF.id).in_flight == 1
    state.apply(finished("chat", SELF.id, ms=100.0, tokens_out=10))
    first = state.peer_rows()[0]
    assert (first.id, first.is_self, first.in_flight, first.calls_served) == (SELF.id, True, 0, 6)


def test_p50_and_tokens_per_second_come_from_finished_calls() -> None:
    state = connected_state()
    for ms, tokens in ((100.0, 10), (300.0, 30), (200.0, 0)):
        state.apply(finished("chat", OTHER.id, ms=ms, tokens_out=tokens))
    other = row(state, OTHER.id)
    assert other.p50_ms == 200.0 and not other.p50_is_ping
    assert other.tokens_per_s == 40 / 0.4  # calls that generated nothing do not dilute tok/s


def test_a_peer_without_calls_shows_its_ping_latency_marked_as_such() -> None:
    other = row(connected_state(), OTHER.id)
    assert (other.p50_ms, other.p50_is_ping, other.tokens_per_s) == (2.5, True, None)


def test_a_peer_that_left_disappears_but_an_unresponsive_one_stays_dead() -> None:
    state = connected_state()
    state.apply(down(OTHER, "unresponsive"))
    assert row(state, OTHER.id).status == "dead"
    state.apply(down(OTHER, "left"))
    assert [r.id for r in state.peer_rows()] == [SELF.id]


def test_calls_of_one_trace_group_together_and_finishes_pair_with_their_start() -> None:
    state = connected_state()
    state.apply(started("mesh_fan_out", SELF.id, trace="t"))
    state.apply(started("chat", OTHER.id, trace="t", caller=SELF.id))
    state.apply(started("chat", OTHER.id, trace="t", caller=SELF.id))
    state.apply(finished("chat", OTHER.id, trace="t", caller=SELF.id, ms=5.0))
    (trace,) = state.traces()
    assert [c.info.tool for c in trace.calls] == ["mesh_fan_out", "chat", "chat"]
    assert [c.running for c in trace.calls] == [True, False, True]  # the oldest running match finished


def test_a_finish_without_a_start_still_shows_up() -> None:
    state = connected_state()
    state.apply(finished("embed", SELF.id, ms=3.0))
    (trace,) = state.traces()
    assert trace.calls[0].info.outcome == "ok" and trace.calls[0].info.ms == 3.0


def test_calls_running_when_the_stream_broke_are_marked_lost() -> None:
    state = connected_state()
    state.apply(started("chat", SELF.id))
    state.apply(Disconnected(reason="gone", retry_in=1.0, attempt=1))
    assert state.traces()[0].calls[0].info.outcome == "lost"
    assert state.connection.phase == "unreachable" and row(state, SELF.id).status == "unreachable"


def test_edges_fade_out_after_the_call_ends() -> None:
    clock = Clock()
    state = connected_state(clock)
    state.apply(started("chat", OTHER.id, caller=SELF.id))
    assert len(state.topology().edges) == 1
    state.apply(finished("chat", OTHER.id, caller=SELF.id, ms=5.0))
    clock.now += EDGE_TTL + 1
    assert state.topology().edges == ()


def test_a_question_back_to_the_caller_is_not_shown_as_a_failure() -> None:
    state = connected_state()
    state.apply(finished("book", OTHER.id, trace="t1", caller=SELF.id, outcome="input_required", ms=4.0))
    state.apply(finished("book", OTHER.id, trace="t2", caller=SELF.id, outcome="error", ms=4.0, error="no seats"))
    assert [edge.failed for edge in state.topology().edges] == [False, True]
    lines = {t.key: call_line(t.calls[0], {}, UTC, lambda _: Style()).plain for t in state.traces()}
    assert lines["t1"].endswith("asked the caller") and "error" not in lines["t1"]
    assert lines["t2"].endswith("error: no seats")


def test_the_log_keeps_a_bounded_number_of_traces() -> None:
    state = connected_state()
    for i in range(MAX_TRACES + 10):
        state.apply(finished("chat", SELF.id, trace=f"t{i}", ms=1.0))
    traces = state.traces()
    assert len(traces) == MAX_TRACES and traces[0].key == f"t{MAX_TRACES + 9}"


def test_unknown_or_malformed_events_are_ignored() -> None:
    assert node_event("router_mood", "{}") is None
    assert node_event("peer_up", "not json") is None
    assert node_event("call_finished", '{"no_tool": 1}') is None
    assert node_event("hello", '{"card": {"id": "x", "name": "y", "pubkey": ""}}') is None  # folded into Connected by the feed
