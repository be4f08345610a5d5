"""The holder's chunk routes on their own: ranges, refusals, and a busy peer that still serves."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from federation.identity import Identity
from federation.models_store import ModelStore
from federation.pull.serve import ChunkServer
from tests.support.models import small_gguf

pytestmark = pytest.mark.anyio


async def serving(tmp_path: Path, *, busy: bool, shared: bool = True) -> tuple[httpx.AsyncClient, str, bytes]:
    model = small_gguf(tmp_path / "models" / "tiny-test.gguf", 1)
    store = ModelStore(tmp_path / "models", Identity.generate(), chunk_bytes=64 * 1024)
    await store.scan()
    app = Starlette(routes=ChunkServer(store, busy=lambda: busy, shared=lambda: shared).routes())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://holder"), store.shared()[0].sha256, model.read_bytes()


async def test_a_peer_busy_with_tool_calls_still_serves_whole_chunks(tmp_path: Path) -> None:
    client, sha256, data = await serving(tmp_path, busy=True)
    async with client:
        answer = await client.get(f"/models/{sha256}/chunk", params={"offset": 1000, "length": 600_000})
    assert answer.status_code == 200 and answer.content == data[1000:601_000]


@pytest.mark.parametrize(
    ("query", "status"),
    [({"offset": 0}, 400), ({"offset": -1, "length": 10}, 416), ({"offset": 0, "length": 0}, 416), ({"offset": 10**9, "length": 10}, 416), ({"offset": 0, "length": 64 << 20}, 416)],
)
async def test_a_range_outside_the_file_or_too_long_is_refused(tmp_path: Path, query: dict[str, int], status: int) -> None:
    client, sha256, _ = await serving(tmp_path, busy=False)
    async with client:
        assert (await client.get(f"/models/{sha256}/chunk", params=query)).status_code == status


async def test_a_model_not_shared_is_not_found(tmp_path: Path) -> None:
    client, sha256, _ = await serving(tmp_path, busy=False, shared=False)
    async with client:
        assert (await client.get(f"/models/{sha256}/manifest")).status_code == 404
        assert (await client.get(f"/models/{'0' * 64}/chunk", params={"offset": 0, "length": 1})).status_code == 404
