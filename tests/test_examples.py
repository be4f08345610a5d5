"""Every example script runs against real peers and prints an answer with its trace tree; the demo says why a peer would not start."""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from federation.node import Node

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
NOTES = ROOT / "examples" / "notes"


@pytest.mark.parametrize("example", ["map_reduce", "debate", "pipeline"])
async def test_example_script_runs_against_real_peers(example: str, model_node: Node, start_node: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPFED_HOME", str(tmp_path))
    monkeypatch.setenv("MCPFED_MDNS", "off")
    module = importlib.import_module(f"examples.{example}")
    async with start_node(name="notes", notes=NOTES) as notes:
        answer = await module.run(["--peer", model_node.mcp_url, "--peer", notes.mcp_url, "--timeout", "10"])
    printed = capsys.readouterr().out
    assert answer.strip() and answer.strip() in printed
    assert "trace " in printed and model_node.name in printed


async def test_a_named_peer_in_another_mesh_stops_the_script_instead_of_running_elsewhere(make_settings: Any, start_node: Any, tmp_path: Path) -> None:
    """`--peer URL` of a peer in another mesh: one line saying why, exit 1, and no prompt served by the model peer mDNS finds."""
    ours = f"ours-{uuid.uuid4().hex[:8]}"
    async with Node(make_settings(name="bystander", model="default", n_ctx=2048, mdns="auto", mesh=ours)) as bystander:
        await bystander.wait_ready()
        async with start_node(name="stranger", mesh="someone-elses") as stranger:
            command = [sys.executable, "-m", "examples.map_reduce", "--peer", stranger.mcp_url, "--mesh", ours, "--timeout", "10"]
            with anyio.fail_after(60):
                finished = await anyio.run_process(command, cwd=ROOT, env=os.environ | {"MCPFED_HOME": str(tmp_path)}, check=False)
        complaint = finished.stderr.decode()
        assert finished.returncode == 1, complaint
        assert f"error: peer {stranger.mcp_url} was refused" in complaint and "someone-elses" in complaint
        assert "Traceback" not in complaint and not finished.stdout
        assert bystander.calls_served == 0, "the prompts went to a peer the user did not name"


async def test_the_demo_says_why_a_peer_failed_to_start(tmp_path: Path) -> None:
    missing = tmp_path / "absent.gguf"
    done = await anyio.run_process(
        [sys.executable, "-m", "examples.demo", "--model", str(missing)], cwd=ROOT, env=os.environ | {"MCPFED_HOME": str(tmp_path)}, check=False
    )
    complaint = done.stderr.decode()
    assert done.returncode == 1, complaint
    for peer in ("alice", "bob"):
        assert f"peer {peer} failed to start:\n  error: model file {missing} does not exist." in complaint
    assert "notes failed" not in complaint and "Traceback" not in complaint
