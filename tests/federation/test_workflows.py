"""Workflow results as people read them: the trace tree the demo and the examples print."""

from __future__ import annotations

from rich.cells import cell_len

from federation.workflows import WorkflowResult, WorkflowStep

STEPS = [
    WorkflowStep(label="map 1", peer="a" * 16, peer_name="al", tokens_in=9, tokens_out=31, ms=655.0),
    WorkflowStep(label="map 2 with a long label", peer="b" * 16, peer_name="borealis-in-the-basement", tokens_in=120, tokens_out=7, ms=12345.6),
    WorkflowStep(label="要約", peer="c" * 16, peer_name="東京のノート", tokens_in=1, tokens_out=1, ms=3.0),
    WorkflowStep(label="café", peer="d" * 16, peer_name="🦊 fox", kind="tool", ms=80.0),
    WorkflowStep(label="reduce", peer="e" * 16, peer_name="e", tokens_in=40, tokens_out=52, ms=1480.4),
]


def _column_starts(line: str, *markers: str) -> list[int]:
    """Where (in terminal cells) each marker begins in `line`."""
    return [cell_len(line[: line.index(marker)]) for marker in markers]


def test_the_trace_tree_keeps_its_columns_straight_for_any_names() -> None:
    tree = WorkflowResult(workflow="map_reduce", answer="done", trace_id="t" * 16, ms=14000.0, steps=STEPS).render_tree()
    header, *lines = tree.splitlines()
    assert header.startswith("trace tttttttttttttttt · map_reduce · 14.00 s")
    assert len(lines) == len(STEPS)
    assert [line[:2] for line in lines] == ["├─", "├─", "├─", "├─", "└─"]
    peer_column = {_column_starts(line, " → ")[0] for line in lines}
    ms_ends = {_column_starts(line, " ms")[0] for line in lines}
    cost_column = {cell_len(line[: line.index(" ms") + len(" ms  ")]) for line in lines}
    assert len(peer_column) == 1, f"the peer column starts at different cells:\n{tree}"
    assert len(ms_ends) == 1, f"the times are not right-aligned:\n{tree}"
    assert len(cost_column) == 1, f"the token column starts at different cells:\n{tree}"
    assert "borealis-in-the-basement (bbbbbbbb)" in tree and "12346 ms" in tree and "120→7 tok" in tree
    assert lines[3].endswith("tool")


def test_a_workflow_without_steps_is_just_its_header() -> None:
    tree = WorkflowResult(workflow="pipeline", answer="", trace_id="t1", ms=0.0, steps=[]).render_tree()
    assert tree == "trace t1 · pipeline · 0.00 s · 0 tokens"
