"""The README's Python API snippet runs as written, against real peers found over loopback mDNS."""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from federation.node import Node
from federation.settings import PeerSettings

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]


def readme_python_api() -> str:
    """The first Python block under "## Python API" in README.md (read here, so the two cannot drift)."""
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme[readme.index("## Python API") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "README.md has no Python block under ## Python API"
    return found.group(1)


async def test_the_readme_python_snippet_runs_as_written(make_settings: Callable[..., PeerSettings], tmp_path: Path) -> None:
    """Only the environment is ours: a private mesh (`MCPFED_MESH`) and state dir, so other peers on this machine stay out."""
    mesh = f"readme-{uuid.uuid4().hex[:8]}"
    on_mdns = {"mdns": "auto", "mesh": mesh}
    async with Node(make_settings(name="model", model="default", n_ctx=2048, **on_mdns)) as model, Node(make_settings(name="notes", notes=ROOT / "examples" / "notes", **on_mdns)):
        await model.wait_ready()
        with anyio.fail_after(240):
            finished = await anyio.run_process(
                [sys.executable, "-c", readme_python_api()], cwd=tmp_path, env=os.environ | {"MCPFED_HOME": str(tmp_path), "MCPFED_MESH": mesh}, check=False
            )
    printed, complaint = finished.stdout.decode(), finished.stderr.decode()
    assert finished.returncode == 0, complaint[-3000:]
    assert printed.startswith("['model', 'notes']\n"), printed
    assert "map 1" in printed and "reduce" in printed and model.name in printed
