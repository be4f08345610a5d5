"""`mcpfed tui` refuses bad input with one clear line, never a stack trace."""

from __future__ import annotations

import pytest

from tests.support.cli import mcpfed_sync


@pytest.mark.parametrize("url", ["localhost:notaport", "ftp://peer", "http://host:port"])  # plain host:port is accepted (http:// assumed)
def test_a_bad_node_url_is_refused_with_what_to_type(url: str) -> None:
    done = mcpfed_sync("tui", "--node", url)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "--node" in done.stderr and ("http://127.0.0.1:8801" in done.stderr or "bad port" in done.stderr)


def test_observe_and_node_together_are_refused() -> None:
    done = mcpfed_sync("tui", "--observe", "--node", "http://127.0.0.1:8801")
    assert done.returncode == 2
    assert "--observe" in done.stderr and "Traceback" not in done.stderr
