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


def small_gguf(target: Path, megabytes: int = 8, *, name: str = "tiny-test") -> Path:
    """A real GGUF file of about `megabytes` MiB (header, one F32 tensor of random bytes) that no model loads.

    What a pull moves is bytes, so the pull tests use this instead of the
    98 MB embedded model: many small chunks, and seconds instead of minutes.
    """
    import random
    import struct

    def text(value: str) -> bytes:
        raw = value.encode()
        return struct.pack("<Q", len(raw)) + raw

    floats = megabytes * (1 << 20) // 4
    metadata = [
        text("general.architecture") + struct.pack("<I", 8) + text("llama"),
        text("general.name") + struct.pack("<I", 8) + text(name),
        text("general.file_type") + struct.pack("<I", 4) + struct.pack("<I", 15),
    ]
    tensor = text("weights") + struct.pack("<I", 1) + struct.pack("<Q", floats) + struct.pack("<I", 0) + struct.pack("<Q", 0)
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, len(metadata)) + b"".join(metadata) + tensor
    header += b"\0" * (-len(header) % 32)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(header + random.Random(name).randbytes(floats * 4))
    return target
