"""Finding the GGUF models on this machine, for `mcpfed models`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from federation.home import state_dir
from servers.embedded_models import EMBEDDED_MODELS
from servers.gguf_file import GGUFError, read_gguf_info, sha256_of

__all__ = ["LocalModel", "find_models"]


@dataclass(frozen=True)
class LocalModel:
    path: Path
    name: str = ""
    size: int = 0
    quantization: str = ""
    architecture: str = ""
    sha256: str = ""
    error: str | None = None


def _describe(path: Path) -> LocalModel:
    try:
        info = read_gguf_info(path)
    except GGUFError as exc:
        return LocalModel(path=path, error=str(exc))
    return LocalModel(
        path=path,
        name=info.name,
        size=info.size,
        quantization=info.quantization,
        architecture=info.architecture,
        sha256=sha256_of(path),
    )


def find_models(extra: list[Path], home: Path | None = None) -> list[LocalModel]:
    """The embedded models, `<home>/models/*.gguf`, and each extra file (or folder's *.gguf)."""
    candidates = [*(model.path() for model in EMBEDDED_MODELS.values()), *sorted((state_dir(home) / "models").glob("*.gguf"))]
    for path in extra:
        candidates += sorted(path.glob("*.gguf")) if path.is_dir() else [path]
    seen: set[Path] = set()
    found = []
    for path in candidates:
        resolved = path.expanduser().resolve()
        if resolved not in seen:
            seen.add(resolved)
            found.append(_describe(resolved))
    return found
