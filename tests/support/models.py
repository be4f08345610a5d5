"""The model the mechanics tests load, and model files that must be refused."""

from __future__ import annotations

from pathlib import Path

from servers.embedded_models import model_path

BASE_MODEL = "gemma3-270m"
"""The model the mechanics tests load: the base Gemma all but never ends a reply on its own (0 of 21 in bench.first_answer), so the token counts they assert hold for any seed."""


def copy_head(source: Path, target: Path, size: int) -> Path:
    """The first `size` bytes of `source`: what an interrupted download leaves behind."""
    with source.open("rb") as stream:
        target.write_bytes(stream.read(size))
    return target


def bad_model(kind: str, folder: Path) -> Path:
    """A `--model` path that must be refused: `missing`, `not-gguf`, `truncated` (the real file's first MiB) or `directory`."""
    if kind == "missing":
        return folder / "absent.gguf"
    if kind == "not-gguf":
        (folder / "notes.gguf").write_text("just some text")
        return folder / "notes.gguf"
    if kind == "truncated":
        return copy_head(model_path(BASE_MODEL), folder / "cut.gguf", 1 << 20)
    assert kind == "directory", kind
    return folder
