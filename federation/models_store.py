"""A peer's model store: the GGUF files it holds, addressed by sha256, each with its signed chunk manifest.

The store is `<state>/models/` (where `mcpfed pull` writes) plus the model the
peer serves. Hashing a model takes seconds, so it happens once per file: the
results are kept in `<state>/models/.index.json`, keyed by path, size and
modification time, and a file is hashed again only when one of them changes.
The store also remembers holders caught serving a chunk that did not match its
manifest (`.reputation.json`), so a later pull can name them at once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from federation.card import SharedModel
from federation.identity import Identity
from federation.pull.manifest import ModelManifest, hash_chunks
from servers.gguf_file import GGUFError

__all__ = ["ModelStore"]

logger = logging.getLogger(__name__)

_INDEX = ".index.json"
_REPUTATION = ".reputation.json"
_HASHED: dict[tuple[str, int, int, int], ModelManifest] = {}
"""(file, size, mtime, chunk size) -> its manifest, hashed already in this process: every peer of a test
session or script that shares one model file (the embedded one) need not read it again."""


class ModelStore:
    """The models under `folder` (and `extra` files), by sha256; `scan()` (re)reads them off the event loop."""

    def __init__(self, folder: Path, identity: Identity, *, chunk_bytes: int, extra: Callable[[], Sequence[Path]] = tuple) -> None:
        self.folder = folder
        self._identity = identity
        self._chunk_bytes = chunk_bytes
        self._extra = extra
        self._held: dict[str, tuple[Path, ModelManifest]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()

    async def scan(self) -> None:
        """Hash whatever is new or changed (in a thread; a stopping peer cuts it short) and sign the manifests."""
        try:
            await anyio.to_thread.run_sync(self._scan, abandon_on_cancel=True)
        except InterruptedError:
            pass

    def stop(self) -> None:
        """Make a scan in progress give up at its next chunk."""
        self._stop.set()

    def shared(self) -> list[SharedModel]:
        """What the card offers: one entry per distinct file content."""
        return [manifest.summary() for _, manifest in sorted(self._held.values(), key=lambda held: held[1].name)]

    def holding(self, sha256: str) -> tuple[Path, ModelManifest] | None:
        """The file with that sha256 and its signed manifest, or None."""
        return self._held.get(sha256)

    def add(self, path: Path, manifest: ModelManifest) -> None:
        """Take in a file that was just pulled (its hashes are known); sync: run it in a thread."""
        with self._lock:
            index = self._read_index()
            index[str(path.resolve())] = _entry(path, manifest)
            self._write_json(_INDEX, index)
            self._held[manifest.sha256] = (path, manifest.signed_by(self._identity))

    def record_lie(self, peer_id: str, name: str, sha256: str, chunk: int) -> None:
        """Remember that `peer_id` served a chunk of `sha256` that did not match its manifest; sync."""
        with self._lock:
            reputation = self.reputation()
            entry = reputation.setdefault(peer_id, {"name": name, "bad_chunks": 0, "last": {}})
            entry["bad_chunks"] += 1
            entry["last"] = {"sha256": sha256, "chunk": chunk, "at": round(time.time(), 3)}
            self._write_json(_REPUTATION, reputation)

    def reputation(self) -> dict[str, Any]:
        """peer id -> {name, bad_chunks, last: {sha256, chunk, at}}; sync."""
        return _read_json(self.folder / _REPUTATION)

    # -- internals ---------------------------------------------------------------
    def _candidates(self) -> list[Path]:
        found = sorted(self.folder.glob("*.gguf")) if self.folder.is_dir() else []
        unique: dict[Path, Path] = {}
        for path in [*found, *self._extra()]:
            unique.setdefault(path.resolve(), path)
        return list(unique.values())

    def _scan(self) -> None:
        with self._lock:
            index = self._read_index()
            fresh: dict[str, Any] = {}
            held: dict[str, tuple[Path, ModelManifest]] = {}
            for path in self._candidates():
                key = str(path.resolve())
                manifest = self._known(index.get(key), path) or self._hash(path)
                if manifest is None:
                    continue
                fresh[key] = _entry(path, manifest)
                held.setdefault(manifest.sha256, (path, manifest.signed_by(self._identity)))
            if fresh != index and self.folder.is_dir():
                self._write_json(_INDEX, fresh)
            self._held = held

    def _known(self, entry: dict[str, Any] | None, path: Path) -> ModelManifest | None:
        """The indexed manifest, if the file is unchanged and was chunked as this peer chunks."""
        if entry is None:
            return None
        try:
            stat = path.stat()
        except OSError:
            return None
        manifest = ModelManifest.model_validate(entry["manifest"])
        unchanged = (entry["size"], entry["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns)
        return manifest if unchanged and manifest.chunk_bytes == self._chunk_bytes else None

    def _hash(self, path: Path) -> ModelManifest | None:
        try:
            stat = path.stat()
            seen = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, self._chunk_bytes)
            if seen not in _HASHED:
                _HASHED[seen] = hash_chunks(path, self._chunk_bytes, stop=self._stop)
            return _HASHED[seen]
        except (GGUFError, OSError) as exc:
            logger.warning("not sharing %s: %s", path, exc)
            return None

    def _read_index(self) -> dict[str, Any]:
        return _read_json(self.folder / _INDEX)

    def _write_json(self, name: str, value: object) -> None:
        """Write beside, then rename: a reader never sees half a file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f".{name}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(value, indent=1))
        os.replace(temporary, self.folder / name)


def _entry(path: Path, manifest: ModelManifest) -> dict[str, Any]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "manifest": manifest.model_dump(mode="json", exclude={"signer", "signature"})}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
