"""The TUI talks to peers over HTTP only: it never imports the MCP servers a peer hosts."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_tui_never_imports_servers() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(m for m in imported_modules(path) if m == "servers" or m.startswith("servers."))
        for path in (REPO / "tui").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_cli_imports_the_tui_from_federation() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "federation").rglob("*.py")
        if path.name != "cli.py" and any(m == "tui" or m.startswith("tui.") for m in imported_modules(path))
    ]
    assert offenders == []
