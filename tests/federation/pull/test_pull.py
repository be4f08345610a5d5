"""`pull_model`: a fourth peer pulls a model three peers on loopback hold, verified chunk by chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from federation.errors import PullError
from federation.models_store import ModelStore
from federation.node import Node
from federation.pull.download import PullReport
from federation.pull.manifest import verify_manifest
from federation.pull.mesh import mesh_models, pull_model
from tests.support.models import small_gguf
from tests.support.relay import AUTH, MESH_FIELDS
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

CHUNK = 64 * 1024
MODEL_MB = 8
CHUNKS = MODEL_MB * 16 + 1  # 8 MiB of weights plus the header's few bytes


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return small_gguf(tmp_path / "source" / "tiny-test.gguf", MODEL_MB)


def holding(home: Path, model: Path, *, copy: bool = False) -> Path:
    """Put `model` in `home/models/` (a link, or a copy a test may spoil)."""
    target = home / "models" / model.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        target.write_bytes(model.read_bytes())
    else:
        target.symlink_to(model)
    return home


async def reputation(folder: Path, puller: Node) -> dict[str, dict]:  # type: ignore[type-arg]
    return await anyio.to_thread.run_sync(ModelStore(folder, puller.identity, chunk_bytes=CHUNK).reputation)


@asynccontextmanager
async def mesh_of_holders(
    start_node: Callable[..., AbstractAsyncContextManager[Node]], tmp_path: Path, model: Path, count: int = 3, copies: int = 0, **options: object
) -> AsyncIterator[tuple[list[Node], Node]]:
    """`count` holders of `model` (the first `copies` with their own copy) and a puller with an empty home that knows them all."""
    async with AsyncExitStack() as stack:
        holders = []
        for number in range(count):
            home = holding(tmp_path / f"holder{number}", model, copy=number < copies)
            node = await stack.enter_async_context(start_node(name=f"holder{number}", home=home, model_chunk_bytes=CHUNK, **MESH_FIELDS, **options))
            holders.append(node)
        for node in holders:
            await wait_until(lambda node=node: bool(node.card().shares))
        puller = await stack.enter_async_context(start_node(name="newcomer", **MESH_FIELDS))
        for node in holders:
            await puller.add_peer(node.mcp_url)
        yield holders, puller


async def test_a_newcomer_pulls_the_model_byte_identical_from_three_holders(start_node, tmp_path: Path, model_file: Path) -> None:
    async with mesh_of_holders(start_node, tmp_path, model_file) as (_holders, puller):
        assert [entry.model.name for entry in mesh_models(puller)] == ["tiny-test"]
        report = await pull_model(puller, "tiny-test", tmp_path / "newcomer" / "models")
    assert report.path is not None and report.path.read_bytes() == model_file.read_bytes()
    assert report.path.parent == tmp_path / "newcomer" / "models"
    assert report.fetched_chunks == CHUNKS and report.resumed_chunks == 0
    assert sum(stats.chunks for stats in report.holders.values()) == CHUNKS
    assert all(stats.chunks > 0 for stats in report.holders.values()), "work was not spread over the holders"
    assert not list((tmp_path / "newcomer" / "models" / ".partial").glob("*.part"))


async def test_a_holder_serving_a_tampered_chunk_is_named_dropped_and_its_chunk_refetched(start_node, tmp_path: Path, model_file: Path) -> None:
    async with mesh_of_holders(start_node, tmp_path, model_file, copies=1) as (holders, puller):
        liar = holders[0]
        spoiled = liar.home / "models" / model_file.name
        spoiled.write_bytes(bytes(byte ^ 0xFF for byte in spoiled.read_bytes()[:CHUNK]) + spoiled.read_bytes()[CHUNK:])
        folder = tmp_path / "newcomer" / "models"
        report = await pull_model(puller, f"sha256:{liar.model_store.shared()[0].sha256}", folder)
    assert report.path is not None and report.path.read_bytes() == model_file.read_bytes()
    assert report.liars in ([], [liar.peer_id])
    if report.liars:  # the liar was asked for its spoiled first chunk: dropped, and remembered
        assert report.holders[liar.peer_id].chunks <= 2
        assert (await reputation(folder, puller))[liar.peer_id]["bad_chunks"] == 1


async def test_a_holder_whose_every_chunk_is_wrong_is_caught(start_node, tmp_path: Path, model_file: Path) -> None:
    async with mesh_of_holders(start_node, tmp_path, model_file, copies=1) as (holders, puller):
        liar = holders[0]
        spoiled = liar.home / "models" / model_file.name
        spoiled.write_bytes(small_gguf(tmp_path / "other.gguf", MODEL_MB, name="tiny-tesu").read_bytes())
        folder = tmp_path / "newcomer" / "models"
        report = await pull_model(puller, "tiny-test", folder)
    assert report.path is not None and report.path.read_bytes() == model_file.read_bytes()
    assert report.liars == [liar.peer_id]
    assert "wrong sha256" in report.holders[liar.peer_id].reason
    assert liar.peer_id in await reputation(folder, puller)


async def test_an_interrupted_pull_resumes_without_fetching_verified_chunks_again(start_node, tmp_path: Path, model_file: Path) -> None:
    folder = tmp_path / "newcomer" / "models"
    async with mesh_of_holders(start_node, tmp_path, model_file) as (_holders, puller):
        with anyio.CancelScope() as interrupted:

            def stop_halfway(report: PullReport) -> None:
                if report.fetched_chunks >= CHUNKS // 2:
                    interrupted.cancel()

            await pull_model(puller, "tiny-test", folder, on_progress=stop_halfway)
        assert interrupted.cancelled_caught
        assert not (folder / model_file.name).exists()
        report = await pull_model(puller, "tiny-test", folder)
    assert report.resumed_chunks >= CHUNKS // 2
    assert report.fetched_chunks == CHUNKS - report.resumed_chunks
    assert report.path is not None and report.path.read_bytes() == model_file.read_bytes()


async def test_two_pulls_of_one_model_at_once_download_it_once(start_node, tmp_path: Path, model_file: Path) -> None:
    folder = tmp_path / "newcomer" / "models"
    reports: list[PullReport] = []
    waited: list[bool] = []
    async with mesh_of_holders(start_node, tmp_path, model_file) as (_holders, puller):

        async def one() -> None:
            reports.append(await pull_model(puller, "tiny-test", folder, on_wait=lambda: waited.append(True)))

        async with anyio.create_task_group() as group:
            group.start_soon(one)
            group.start_soon(one)
    assert sum(report.fetched_chunks for report in reports) == CHUNKS
    assert waited == [True] and sorted(report.already_held for report in reports) == [False, True]
    assert len(list(folder.glob("*.gguf"))) == 1


async def test_an_unknown_model_gets_one_line_naming_what_the_mesh_holds(start_node, tmp_path: Path, model_file: Path) -> None:
    async with mesh_of_holders(start_node, tmp_path, model_file, count=1) as (_holders, puller):
        with pytest.raises(PullError, match=r"nobody in the mesh holds 'llama-70b'; the mesh holds: tiny-test Q4_K_M sha256:") as caught:
            await pull_model(puller, "llama-70b", tmp_path / "newcomer" / "models")
    assert "\n" not in str(caught.value)


async def test_strangers_get_neither_manifest_nor_chunk(start_node, tmp_path: Path, model_file: Path) -> None:
    async with mesh_of_holders(start_node, tmp_path, model_file, count=1) as (holders, _puller):
        sha256 = holders[0].model_store.shared()[0].sha256
        async with httpx.AsyncClient(base_url=holders[0].url) as http:
            for path in (f"/models/{sha256}/manifest", f"/models/{sha256}/chunk?offset=0&length=100"):
                assert (await http.get(path)).status_code == 401
            member = await http.get(f"/models/{sha256}/chunk?offset=0&length=100", headers=AUTH)
    assert member.status_code == 200 and member.content == model_file.read_bytes()[:100]


async def test_a_manifest_altered_after_signing_is_refused(start_node, tmp_path: Path, model_file: Path) -> None:
    async with mesh_of_holders(start_node, tmp_path, model_file, count=1) as (holders, _puller):
        holder = holders[0]
        sha256 = holder.model_store.shared()[0].sha256
        async with httpx.AsyncClient(base_url=holder.url, headers=AUTH) as http:
            raw = (await http.get(f"/models/{sha256}/manifest")).content
    verify_manifest(raw, holder=holder.card(), sha256=sha256)
    forged = raw.replace(b'"chunks":["', b'"chunks":["0', 1).replace(b'","', b'","', 1)
    altered = raw.replace(b"tiny-test", b"tiny-fake", 1)
    for bad in (altered, forged):
        with pytest.raises(PullError, match=r"bad signature|malformed|does not fit"):
            verify_manifest(bad, holder=holder.card(), sha256=sha256)


async def test_a_peer_started_with_no_share_models_offers_none(start_node, tmp_path: Path, model_file: Path) -> None:
    async with start_node(name="private", home=holding(tmp_path / "private", model_file), share_models=False) as node:
        await anyio.sleep(0.2)
        assert node.card().shares == []


async def test_the_card_digest_changes_when_a_peer_starts_sharing_a_model(start_node, tmp_path: Path, model_file: Path) -> None:
    async with start_node(name="late", home=tmp_path / "late", model_chunk_bytes=CHUNK) as node:
        before = node.card().digest()
        await anyio.to_thread.run_sync(holding, node.home, model_file)
        await node.model_store.scan()
        assert [shared.name for shared in node.card().shares] == ["tiny-test"]
        assert node.card().digest() != before
