"""Fetching one model's chunks from every holder at once, verified, into a partial file that resumes.

Every holder gets `_PER_HOLDER` workers that take chunk indices from one
shared queue, so a faster holder simply comes back for more (work stealing).
A chunk is hashed as it lands and written at its offset only if its sha256 is
the manifest's; its index is then appended to a sidecar, so a pull stopped in
any way (Ctrl-C, a crash, a full disk) resumes from the chunks already there
(they are hashed again, locally, before they are trusted). A holder that
cannot be reached or breaks off is dropped and its chunk goes back on the
queue; a holder whose chunk does not match is named, dropped for the rest of
the pull and recorded in the store's reputation. The file moves into
`<state>/models/` by one rename, only after the whole file's sha256 matches.
An exclusive lock per model makes a second pull of the same model wait for
the first, then find it done: one download.

    <models>/.partial/<sha256>.part        the file being filled (sparse)
    <models>/.partial/<sha256>.chunks      indices of verified chunks, one per line
    <models>/.partial/<sha256>.manifest    the manifest they were verified against
    <models>/.partial/<sha256>.lock        held by the pull in progress
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx

from federation.const import MODELS_PATH
from federation.errors import PullError
from federation.models_store import ModelStore
from federation.pull.manifest import ModelManifest, safe_file_name
from servers.gguf_file import sha256_of

__all__ = ["Holder", "HolderStats", "PullReport", "download"]

_PER_HOLDER = 2
"""Requests in flight per holder: one arriving while the next is asked for keeps the link busy."""
_CHUNK_TIMEOUT_SECONDS = 60.0
_LOCK_POLL_SECONDS = 0.2
_FAILURES_TO_DROP = 2
_COPIES = 2
"""Holders asked for one chunk at most, once nothing is left in the queue."""


@dataclass(frozen=True)
class Holder:
    """A peer that shares the model: where to ask and with what credential."""

    peer_id: str
    name: str
    base_url: str
    headers: Callable[[], dict[str, str]] = dict


@dataclass
class HolderStats:
    """What one holder delivered in this pull; `state` is active, dropped or lied."""

    name: str
    chunks: int = 0
    bytes: int = 0
    first_asked: float = 0.0
    last_delivered: float = 0.0
    state: str = "active"
    reason: str = ""
    failures: int = 0

    @property
    def rate(self) -> float:
        """Bytes per second from its first request to its latest chunk (its requests overlap, so not summed)."""
        elapsed = self.last_delivered - self.first_asked
        return self.bytes / elapsed if elapsed > 0 else 0.0


@dataclass
class PullReport:
    """Where a pull stands, handed to `on_progress` after every chunk, and returned at the end."""

    manifest: ModelManifest
    path: Path | None = None
    fetched_chunks: int = 0
    resumed_chunks: int = 0
    verified_bytes: int = 0
    holders: dict[str, HolderStats] = field(default_factory=dict)
    already_held: bool = False

    @property
    def liars(self) -> list[str]:
        return [peer_id for peer_id, stats in self.holders.items() if stats.state == "lied"]


class _Work:
    """The shared queue of chunk indices.

    `take` hands out queued chunks first. When none are queued but some are
    still out, a holder that is idle asks for one of those too (at most
    `_COPIES` holders per chunk: the end of a pull does not wait on the slowest
    holder); the first verified copy counts, the other is dropped. It waits
    only while every chunk out is already asked twice or of itself.
    """

    def __init__(self, todo: list[int]) -> None:
        self._queue = deque(todo)
        self._out: dict[int, set[str]] = {}
        self._finished: set[int] = set()
        self._changed = anyio.Event()

    @property
    def remaining(self) -> int:
        return len(self._queue) + len(self._out)

    async def take(self, holder: str) -> int | None:
        while True:
            if self._queue:
                index = self._queue.popleft()
                self._out[index] = {holder}
                return index
            if not self._out:
                return None
            spare = next((index for index, asked in self._out.items() if holder not in asked and len(asked) < _COPIES), None)
            if spare is not None:
                self._out[spare].add(holder)
                return spare
            await self._changed.wait()

    def give_back(self, index: int, holder: str) -> None:
        asked = self._out.get(index)
        if asked is not None:
            asked.discard(holder)
            if not asked:
                del self._out[index]
                self._queue.appendleft(index)
        self._notify()

    def finished(self, index: int) -> bool:
        return index in self._finished

    def done(self, index: int) -> bool:
        """Mark the chunk written; False when another holder's copy got there first."""
        first = index not in self._finished
        self._finished.add(index)
        self._out.pop(index, None)
        self._notify()
        return first

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


class _BadChunk(Exception):
    """The holder answered, but not with a usable chunk (status, length)."""


class _Partial:
    """The partial file and its sidecars for one model; every method is sync (run it in a thread)."""

    def __init__(self, folder: Path, manifest: ModelManifest) -> None:
        self.manifest = manifest
        self.dir = folder / ".partial"
        self.data = self.dir / f"{manifest.sha256}.part"
        self._chunks = self.dir / f"{manifest.sha256}.chunks"
        self._manifest = self.dir / f"{manifest.sha256}.manifest"
        self._descriptor = -1

    def open(self) -> list[int]:
        """Open (or create) the partial file; the indices of chunks already verified, hashed again here."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self._same_manifest():
            self._chunks.unlink(missing_ok=True)
            self._manifest.write_text(self.manifest.model_dump_json())
        self._descriptor = os.open(self.data, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(self._descriptor, self.manifest.size)
        listed = {int(line) for line in self._read_lines() if line.isdigit()}
        have = [index for index in sorted(listed) if index < len(self.manifest.chunks) and self._holds(index)]
        self._check_space(len(have))
        return have

    def _same_manifest(self) -> bool:
        try:
            kept = ModelManifest.model_validate_json(self._manifest.read_bytes())
        except (OSError, ValueError):
            return False
        return (kept.chunk_bytes, kept.chunks) == (self.manifest.chunk_bytes, self.manifest.chunks)

    def _read_lines(self) -> list[str]:
        try:
            return self._chunks.read_text().split()
        except OSError:
            return []

    def _holds(self, index: int) -> bool:
        offset, length = self.manifest.span(index)
        return hashlib.sha256(os.pread(self._descriptor, length, offset)).hexdigest() == self.manifest.chunks[index]

    def _check_space(self, chunks_held: int) -> None:
        needed = self.manifest.size - chunks_held * self.manifest.chunk_bytes
        free = shutil.disk_usage(self.dir).free
        if needed > free:
            raise PullError(self.disk_full(f"it needs {needed / 1e6:.0f} MB more and {free / 1e6:.0f} MB are free"))

    def disk_full(self, detail: str) -> str:
        return (
            f"not enough disk space for {self.manifest.name} in {self.dir.parent}: {detail}. "
            f"Free some space and run the same pull again; what is verified is kept in {self.data}."
        )

    def write(self, index: int, data: bytes) -> None:
        offset, _ = self.manifest.span(index)
        try:
            os.pwrite(self._descriptor, data, offset)
            with self._chunks.open("a") as sidecar:
                sidecar.write(f"{index}\n")
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise PullError(self.disk_full("the disk filled up while writing")) from exc
            raise PullError(f"cannot write {self.data}: {exc.strerror or exc}") from exc

    def finish(self, folder: Path) -> Path:
        """Check the whole file and move it into `folder`; PullError (and a fresh start next time) if it does not match."""
        os.fsync(self._descriptor)
        self.close()
        if sha256_of(self.data) != self.manifest.sha256:
            self._chunks.unlink(missing_ok=True)
            raise PullError(
                f"every chunk of {self.manifest.name} matched the manifest signed by {self.manifest.signer}, but the whole file does not "
                f"hash to sha256:{self.manifest.sha256[:16]}…: that manifest is wrong. Nothing was moved into {folder}."
            )
        target = folder / safe_file_name(self.manifest)
        if target.exists():
            target = target.with_name(f"{target.stem}-{self.manifest.sha256[:12]}.gguf")
        os.replace(self.data, target)
        self._chunks.unlink(missing_ok=True)
        self._manifest.unlink(missing_ok=True)
        return target

    def close(self) -> None:
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1


@asynccontextmanager
async def _exclusive(path: Path, on_wait: Callable[[], None]) -> AsyncIterator[None]:
    """Hold the model's lock; while another pull (any process) holds it, say so once and wait."""
    await anyio.to_thread.run_sync(lambda: path.parent.mkdir(parents=True, exist_ok=True))
    lock = await anyio.to_thread.run_sync(open, path, "a")
    try:
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    on_wait()
                    told = True
                await anyio.sleep(_LOCK_POLL_SECONDS)
        yield
    finally:
        lock.close()  # releases the lock


async def download(
    manifest: ModelManifest,
    holders: list[Holder],
    store: ModelStore,
    http: httpx.AsyncClient,
    *,
    on_progress: Callable[[PullReport], None] = lambda report: None,
    on_wait: Callable[[], None] = lambda: None,
) -> PullReport:
    """Pull `manifest`'s file from `holders` into `store`'s folder; the report says who sent what."""
    report = PullReport(manifest, holders={holder.peer_id: HolderStats(holder.name) for holder in holders})
    async with _exclusive(store.folder / ".partial" / f"{manifest.sha256}.lock", on_wait):
        await store.scan()  # a pull that held the lock before us may have brought it
        if held := store.holding(manifest.sha256):
            report.path, report.already_held, report.verified_bytes = held[0], True, manifest.size
            return report
        partial = _Partial(store.folder, manifest)
        try:
            have = await anyio.to_thread.run_sync(partial.open)
            report.resumed_chunks = len(have)
            report.verified_bytes = sum(manifest.span(index)[1] for index in have)
            on_progress(report)
            work = _Work([index for index in range(len(manifest.chunks)) if index not in set(have)])
            async with anyio.create_task_group() as group:
                for holder in holders:
                    for _ in range(_PER_HOLDER):
                        group.start_soon(_worker, holder, work, partial, store, http, report, on_progress)
            if work.remaining:
                raise PullError(_nobody_left(report, partial))
            report.path = await anyio.to_thread.run_sync(partial.finish, store.folder)
        finally:
            partial.close()
        await anyio.to_thread.run_sync(store.add, report.path, manifest)
    return report


async def _worker(
    holder: Holder, work: _Work, partial: _Partial, store: ModelStore, http: httpx.AsyncClient, report: PullReport, on_progress: Callable[[PullReport], None]
) -> None:
    stats = report.holders[holder.peer_id]
    manifest = partial.manifest
    while stats.state == "active" and (index := await work.take(holder.peer_id)) is not None:
        if stats.state != "active":
            work.give_back(index, holder.peer_id)
            return
        stats.first_asked = stats.first_asked or time.monotonic()
        try:
            data = await _fetch(http, holder, manifest, index)
        except (httpx.HTTPError, TimeoutError, _BadChunk) as exc:
            work.give_back(index, holder.peer_id)
            stats.failures += 1
            if stats.failures >= _FAILURES_TO_DROP or isinstance(exc, httpx.ConnectError):
                stats.state, stats.reason = "dropped", _describe(exc)
            continue
        digest = await anyio.to_thread.run_sync(_sha256, data)
        if digest != manifest.chunks[index]:
            work.give_back(index, holder.peer_id)
            stats.state, stats.reason = "lied", f"served chunk {index} with the wrong sha256"
            await anyio.to_thread.run_sync(store.record_lie, holder.peer_id, holder.name, manifest.sha256, index)
            on_progress(report)
            return
        if work.finished(index):  # another holder's copy landed first
            continue
        try:
            await anyio.to_thread.run_sync(partial.write, index, data)
        except PullError:
            work.give_back(index, holder.peer_id)
            raise
        if not work.done(index):
            continue
        stats.failures = 0
        stats.chunks += 1
        stats.bytes += len(data)
        stats.last_delivered = time.monotonic()
        report.fetched_chunks += 1
        report.verified_bytes += len(data)
        on_progress(report)


async def _fetch(http: httpx.AsyncClient, holder: Holder, manifest: ModelManifest, index: int) -> bytes:
    offset, length = manifest.span(index)
    url = f"{holder.base_url}{MODELS_PATH}/{manifest.sha256}/chunk"
    with anyio.fail_after(_CHUNK_TIMEOUT_SECONDS):
        response = await http.get(url, params={"offset": offset, "length": length}, headers=holder.headers())
    if response.status_code != 200:
        raise _BadChunk(f"answered {response.status_code}: {response.text[:200]}")
    if len(response.content) != length:
        raise _BadChunk(f"sent {len(response.content)} bytes for a {length}-byte chunk")
    return response.content


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no chunk within {_CHUNK_TIMEOUT_SECONDS:g} s"
    return f"{type(exc).__name__} {exc}".strip()


def _nobody_left(report: PullReport, partial: _Partial) -> str:
    why = "; ".join(f"{stats.name}: {stats.state} ({stats.reason})" for stats in report.holders.values()) or "no holders"
    done = report.verified_bytes / max(report.manifest.size, 1)
    return (
        f"every holder of {report.manifest.name} failed before the pull finished ({why}). "
        f"{done:.0%} is verified and kept in {partial.data}; run the same pull again to resume."
    )
