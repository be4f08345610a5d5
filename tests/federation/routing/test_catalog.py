"""`<peer>__<tool>` names, as the catalog makes them."""

from __future__ import annotations

from federation.routing import namespaced


def test_namespaced_names_fit_the_mcp_rules() -> None:
    assert namespaced("alice", "search_notes") == "alice__search_notes"
    weird = namespaced("bob's laptop", "read file/v2!" + "x" * 80)
    assert len(weird) <= 48 and all(c.isalnum() or c in "_-" for c in weird)
    assert weird != namespaced("bob's laptop", "read file/v2!" + "y" * 80), "shortened names stay distinct"
