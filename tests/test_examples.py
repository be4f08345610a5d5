"""Every example script runs against real peers and prints an answer with its trace tree."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from federation.node import Node

pytestmark = pytest.mark.anyio

NOTES = Path(__file__).resolve().parents[1] / "examples" / "notes"


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
