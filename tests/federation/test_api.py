"""The Python API and workflows, against real peers (static URLs, no mDNS)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from federation import Mesh, PeerError, PipelineStep, SyncMesh, ToolCallError, debate, map_reduce, pipeline
from federation.api import member_settings
from federation.node import Node

pytestmark = pytest.mark.anyio

NOTES = Path(__file__).resolve().parents[2] / "examples" / "notes"


@pytest.fixture
async def notes_node(start_node: Any) -> Any:
    async with start_node(name="notes", notes=NOTES) as node:
        yield node


def connect(tmp_path: Path, *nodes: Node, **options: Any) -> Any:
    return Mesh.connect(peers=[n.mcp_url for n in nodes], home=tmp_path, mdns="off", wait_for=len(nodes), **options)


async def test_ask_streams_and_reports_the_peer_that_answered(model_node: Node, tmp_path: Path) -> None:
    pieces: list[str] = []

    async def collect(text: str) -> None:
        pieces.append(text)

    async with connect(tmp_path, model_node) as mesh:
        assert [p.name for p in mesh.peers()] == [model_node.name]
        answer = await mesh.ask("Name a fruit.", max_tokens=6, on_text=collect)
    assert answer.peer == model_node.peer_id and answer.tokens_out == 6
    assert "".join(pieces) == answer.text


async def test_call_returns_structured_data_and_peer_errors_are_clear(notes_node: Node, tmp_path: Path) -> None:
    async with connect(tmp_path, notes_node) as mesh:
        found = await mesh.call("notes", "search_notes", {"query": "relay"})
        assert found.data["hits"] and found.peer_name == "notes"
        with pytest.raises(ToolCallError, match="passwd"):  # the peer's own text, unchanged
            await mesh.call("notes", "read_note", {"path": "../../etc/passwd"})
        with pytest.raises(PeerError, match="unknown peer 'ghost'"):
            await mesh.call("ghost", "anything")
        with pytest.raises(PeerError, match="serves a model"):
            await mesh.ask("nobody here has a model")


async def test_waiting_for_absent_peers_fails_with_a_count(tmp_path: Path) -> None:
    with pytest.raises(PeerError, match="only 0 of 2 peers"):
        async with Mesh.connect(home=tmp_path, mdns="off", wait_for=2, timeout=0.5):
            pass


async def test_each_fan_out_answer_carries_its_own_time(model_node: Node, start_node: Any, tmp_path: Path) -> None:
    """Three answers over two peers: one peer serves two of them in turn, so their times must differ."""
    async with start_node(name="second", model="default", n_ctx=2048) as second:
        await second.wait_ready()
        async with connect(tmp_path, model_node, second) as mesh:
            clock = time.perf_counter()
            answers = await mesh.fan_out("Name a colour.", n=3, max_tokens=4)
            total_ms = (time.perf_counter() - clock) * 1000
    assert len(answers) == 3 and {a.peer for a in answers} == {model_node.peer_id, second.peer_id}
    assert len({a.ms for a in answers}) > 1, f"every answer reports the same time: {[a.ms for a in answers]}"
    assert all(0 < a.ms <= total_ms for a in answers), ([a.ms for a in answers], total_ms)


async def test_map_reduce_runs_every_chunk_and_one_reduce_under_one_trace(model_node: Node, tmp_path: Path) -> None:
    async with connect(tmp_path, model_node) as mesh:
        result = await map_reduce(mesh, ["cats purr", "dogs bark"], map_prompt="Restate:", reduce_prompt="Combine:", max_tokens=8)
    assert [s.label for s in result.steps] == ["map 1", "map 2", "reduce"]
    assert all(s.peer == model_node.peer_id and s.tokens_out > 0 for s in result.steps)
    assert result.answer == result.steps[-1].output
    assert result.trace_id in result.render_tree() and "reduce" in result.render_tree()
    await model_node.store.flush()
    served = {r.trace_id for r in model_node.store.calls() if r.tool == "chat"}
    assert served == {result.trace_id}, "every step was served under the workflow's trace id"


async def test_debate_answers_critiques_and_judges(model_node: Node, tmp_path: Path) -> None:
    async with connect(tmp_path, model_node) as mesh:
        result = await debate(mesh, "Is tea better than coffee?", n=2, max_tokens=6)
    assert [s.label for s in result.steps] == ["answer 1", "answer 2", "critique 1", "critique 2", "judge"]


async def test_pipeline_feeds_a_tool_result_into_a_model_step(model_node: Node, notes_node: Node, tmp_path: Path) -> None:
    steps = [
        PipelineStep(label="look up", peer="notes", tool="search_notes", arguments={"query": "{input}", "limit": 1}),
        PipelineStep(label="explain", prompt="Explain: {input}", max_tokens=8),
    ]
    async with connect(tmp_path, model_node, notes_node) as mesh:
        result = await pipeline(mesh, steps, "mdns")
    look_up, explain = result.steps
    assert look_up.kind == "tool" and look_up.peer_name == "notes" and "mDNS" in look_up.output
    assert explain.peer == model_node.peer_id and result.answer == explain.output


async def test_sync_mesh_works_from_plain_code(notes_node: Node, tmp_path: Path) -> None:
    """A plain script's view: no async anywhere (run in a worker thread, as a script's main thread would)."""

    def script() -> list[str]:
        with SyncMesh.connect(peers=[notes_node.mcp_url], home=tmp_path, mdns="off", wait_for=1) as mesh:
            return [hit["path"] for hit in mesh.call("notes", "search_notes", {"query": "mdns"}).data["hits"]]

    paths = await anyio.to_thread.run_sync(script)
    assert any(path.endswith("mdns.md") for path in paths)


async def test_a_named_peer_that_cannot_be_admitted_is_an_error_saying_why(start_node: Any, tmp_path: Path) -> None:
    async with start_node(name="stranger", mesh="someone-elses") as stranger:
        with pytest.raises(PeerError, match=f"peer {stranger.mcp_url} was refused: .*someone-elses"):
            async with Mesh.connect(peers=[stranger.mcp_url], home=tmp_path, mdns="off"):
                pass
    with pytest.raises(PeerError, match=f"peer {stranger.mcp_url} did not answer within 5 s"):
        async with Mesh.connect(peers=[stranger.mcp_url], home=tmp_path, mdns="off"):
            pass


async def test_peers_and_ask_work_as_soon_as_connect_returns(model_node: Node, notes_node: Node, tmp_path: Path) -> None:
    """No `wait_for`: the first look has already found the named peers and their tools."""
    async with Mesh.connect(peers=[model_node.mcp_url, notes_node.mcp_url], home=tmp_path, mdns="off") as mesh:
        assert {p.name for p in mesh.peers()} == {model_node.name, "notes"}
        answer = await mesh.ask("Name a fruit.", max_tokens=4)
        found = await mesh.call("notes", "search_notes", {"query": "relay"})
    assert answer.peer == model_node.peer_id and found.data["hits"]


def test_a_script_serves_nothing_the_environment_names_unless_its_code_asks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPFED_SHARE", "fs=cat")
    monkeypatch.setenv("MCPFED_RELAY", "http://127.0.0.1:9")
    settings = member_settings("script", tmp_path)
    assert settings.share == [] and settings.relays == ["http://127.0.0.1:9"]
    assert member_settings("script", tmp_path, share=["echo=cat"]).share == ["echo=cat"]
