"""The public surface and the dependency direction (STYLE.md: 'Dependency direction is law')."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import federation

ROOT = Path(__file__).resolve().parents[1]


def test_every_exported_name_exists_and_all_is_sorted() -> None:
    assert federation.__all__ == sorted(federation.__all__)
    for name in federation.__all__:
        assert getattr(federation, name) is not None


def test_all_is_exactly_the_public_names() -> None:
    """Like httpx's test_exported_members: a name is public if and only if `__all__` lists it.

    The package is lazy, so its public names are those it can load (`_HOMES`)
    plus any defined in it; submodules (attributes once imported) are not names.
    """
    defined = {name for name, value in vars(federation).items() if not name.startswith("_") and not isinstance(value, ModuleType)}
    assert federation.__all__ == sorted(set(federation._HOMES) | defined)


def _federation_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every `from federation… import name` and `import federation…` in a file."""
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "federation":
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name.split(".")[0] == "federation"]
    return found


def test_the_tui_examples_and_benches_import_only_exported_names_from_federation() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for package in ("tui", "examples", "bench")
        for path in (ROOT / package).rglob("*.py")
        for module, name in _federation_imports(path)
        if module == "federation" and name not in federation.__all__
    ]
    assert offenders == []


def test_the_tui_and_the_examples_use_nothing_but_the_package_exports() -> None:
    """No `federation.<module>` imports: what they need is public, and the internals may move.

    (Benches may: they measure internals, e.g. the health probe. `federation.cli`
    is the one place that ties the mesh and the TUI together, the other way round.)
    """
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for package in ("tui", "examples")
        for path in (ROOT / package).rglob("*.py")
        for module, _ in _federation_imports(path)
        if module != "federation"
    ]
    assert offenders == []


def test_importing_the_errors_does_not_load_the_whole_package() -> None:
    code = "import sys, federation.errors; print('mcp' in sys.modules, 'uvicorn' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert shown.split() == ["False", "False"]


def _imports(package: str) -> dict[Path, set[str]]:
    found: dict[Path, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[path.relative_to(ROOT)] = names
    return found


def test_servers_import_nothing_of_the_mesh_or_the_tui() -> None:
    offenders = {str(p): n & {"federation", "tui"} for p, n in _imports("servers").items() if n & {"federation", "tui"}}
    assert offenders == {}


def test_only_the_cli_reaches_the_tui_from_the_mesh() -> None:
    offenders = [str(p) for p, n in _imports("federation").items() if "tui" in n and p.name != "cli.py"]
    assert offenders == []


def test_the_tui_never_imports_the_servers() -> None:
    offenders = [str(p) for p, n in _imports("tui").items() if "servers" in n]
    assert offenders == []
