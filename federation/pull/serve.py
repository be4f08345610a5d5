"""The holder's side of a pull: `GET /models/<sha256>/manifest` and `GET /models/<sha256>/chunk?offset=&length=`.

Both routes sit behind the node's `MeshGuard`, like every route but `/health`
and the proof: a stranger gets a 401, never a byte. Chunks are asked for by
byte range (at most `MAX_CHUNK_BYTES`), so any holder serves any puller's
manifest. They stream in `_PIECE`-byte pieces read in a thread, and two
things slow them so a pull never starves inference:

- a rate cap (`--share-rate`, MB/s, shared by every stream of this peer);
- while the peer has tool calls in flight or queued, one chunk stream at a
  time and a pause of `_BUSY_PAUSE` between pieces (about 5 MB/s): tool calls
  come first, pulls still move.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from federation.const import MAX_CHUNK_BYTES, MODELS_PATH
from federation.models_store import ModelStore

__all__ = ["ChunkServer"]

_PIECE = 256 * 1024
_BUSY_PAUSE = 0.05
_STREAMS = 8
"""Chunk streams a peer serves at once when idle; more wait their turn."""


class _ByteRate:
    """A token bucket in bytes per second, shared by every stream (None: no cap)."""

    def __init__(self, per_second: float | None) -> None:
        self._rate = per_second
        self._next = 0.0

    async def take(self, size: int) -> None:
        if not self._rate:
            return
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + size / self._rate
        if start > now:
            await anyio.sleep(start - now)


class ChunkServer:
    """Serves the manifests and chunks of a `ModelStore`; `busy()` says tool calls are waiting or running."""

    def __init__(self, store: ModelStore, *, busy: Callable[[], bool], rate_mb: float = 0.0, shared: Callable[[], bool] = lambda: True) -> None:
        self._store = store
        self._busy = busy
        self._shared = shared
        self._rate = _ByteRate(rate_mb * 1e6 if rate_mb > 0 else None)
        self._streams = anyio.CapacityLimiter(_STREAMS)
        self._busy_lane = anyio.Lock()
        self.bytes_served = 0

    def routes(self) -> list[Route]:
        return [
            Route(MODELS_PATH + "/{sha256}/manifest", self._manifest, methods=["GET"]),
            Route(MODELS_PATH + "/{sha256}/chunk", self._chunk, methods=["GET"]),
        ]

    def _held(self, request: Request) -> tuple[Path, int] | Response:
        sha256 = request.path_params["sha256"]
        held = self._store.holding(sha256) if self._shared() else None
        if held is None:
            return _problem(404, f"this peer does not share a model with sha256 {sha256!r}; its card lists what it shares")
        return held[0], held[1].size

    async def _manifest(self, request: Request) -> Response:
        held = self._store.holding(request.path_params["sha256"]) if self._shared() else None
        if held is None:
            return _problem(404, f"this peer does not share a model with sha256 {request.path_params['sha256']!r}")
        return Response(held[1].model_dump_json(), media_type="application/json")

    async def _chunk(self, request: Request) -> Response:
        held = self._held(request)
        if isinstance(held, Response):
            return held
        path, size = held
        try:
            offset, length = int(request.query_params["offset"]), int(request.query_params["length"])
        except (KeyError, ValueError):
            return _problem(400, "give the byte range as ?offset=N&length=N")
        if offset < 0 or not 0 < length <= MAX_CHUNK_BYTES or offset + length > size:
            return _problem(416, f"range {offset}+{length} is outside the file ({size} bytes) or longer than {MAX_CHUNK_BYTES} bytes")
        headers = {"content-length": str(length), "cache-control": "no-store"}
        return StreamingResponse(self._pieces(path, offset, length), media_type="application/octet-stream", headers=headers)

    async def _pieces(self, path: Path, offset: int, length: int) -> AsyncIterator[bytes]:
        async with self._streams:
            descriptor = await anyio.to_thread.run_sync(os.open, path, os.O_RDONLY)
            try:
                end = offset + length
                while offset < end:
                    size = min(_PIECE, end - offset)
                    if self._busy():
                        async with self._busy_lane:  # tool calls first: one stream at a time, with a pause
                            await anyio.sleep(_BUSY_PAUSE)
                    await self._rate.take(size)
                    piece = await anyio.to_thread.run_sync(os.pread, descriptor, size, offset)
                    if len(piece) != size:
                        raise OSError(f"{path} shrank while its chunk was served")
                    offset += size
                    self.bytes_served += size
                    yield piece
            finally:
                os.close(descriptor)


def _problem(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
