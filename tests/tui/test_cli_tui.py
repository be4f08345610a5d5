"""`mcpfed tui` refuses bad input with one clear line, never a stack trace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def mcpfed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "federation.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("url", ["localhost:notaport", "ftp://peer", "http://host:port"])  # plain host:port is accepted (http:// assumed)
def test_a_bad_node_url_is_refused_with_what_to_type(url: str) -> None:
    done = mcpfed("tui", "--node", url)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "--node" in done.stderr and ("http://127.0.0.1:8801" in done.stderr or "bad port" in done.stderr)


def test_observe_and_node_together_are_refused() -> None:
    done = mcpfed("tui", "--observe", "--node", "http://127.0.0.1:8801")
    assert done.returncode == 2
    assert "--observe" in done.stderr and "Traceback" not in done.stderr
