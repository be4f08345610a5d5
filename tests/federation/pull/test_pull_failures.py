"""Pulls that meet a holder dying mid-pull, or reach the holders only through a relay."""

from __future__ import annotations

import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import pytest

from federation.errors import PullError
from federation.node import Node
from federation.pull.download import PullReport
from federation.pull.mesh import pull_model
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from tests.support.models import small_gguf
from tests.support.processes import serve_process
from tests.support.relay import MESH_FIELDS
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

CHUNK = 64 * 1024


def _holding(home: Path, model: Path) -> Path:
    (home / "models").mkdir(parents=True, exist_ok=True)
    (home / "models" / model.name).symlink_to(model)
    return home


async def test_a_holder_killed_mid_pull_leaves_its_chunks_to_the_others(start_node: Callable[..., AbstractAsyncContextManager[Node]], tmp_path: Path) -> None:
    model = small_gguf(tmp_path / "source" / "tiny-test.gguf", 8)
    _holding(tmp_path / "homes" / "doomed", model)
    capped = {"model_chunk_bytes": CHUNK, "share_rate": 4.0}
    doomed_args = ("--model", "none", "--model-chunk-bytes", str(CHUNK), "--share-rate", "4")
    async with (
        serve_process(tmp_path / "homes", "doomed", *doomed_args) as (doomed_url, doomed),
        start_node(name="steady1", home=_holding(tmp_path / "steady1", model), **capped) as steady1,
        start_node(name="steady2", home=_holding(tmp_path / "steady2", model), **capped) as steady2,
        start_node(name="newcomer") as puller,
    ):
        for node in (steady1, steady2):
            await wait_until(lambda node=node: bool(node.card().shares))
        await wait_until(lambda: _shares(puller, doomed_url), "the doomed holder's card to list the model")
        for url in (steady1.mcp_url, steady2.mcp_url):
            await puller.add_peer(url)
        killed: list[int] = []

        def kill_halfway(report: PullReport) -> None:
            delivered = next(stats for stats in report.holders.values() if stats.name == "doomed")
            if delivered.chunks >= 3 and not killed:
                doomed.send_signal(signal.SIGKILL)
                killed.append(report.fetched_chunks)

        report = await pull_model(puller, "tiny-test", tmp_path / "newcomer" / "models", on_progress=kill_halfway)
    assert killed and killed[0] < len(report.manifest.chunks)
    assert report.path is not None and report.path.read_bytes() == model.read_bytes()
    doomed_stats = next(stats for stats in report.holders.values() if stats.name == "doomed")
    assert doomed_stats.state == "dropped"
    assert sum(stats.chunks for stats in report.holders.values()) == len(report.manifest.chunks)


async def _shares(puller: Node, url: str) -> bool:
    peer = await puller.add_peer(url)
    return bool(peer.card.shares)


async def test_a_pull_through_a_relay_only(start_node: Callable[..., AbstractAsyncContextManager[Node]], tmp_path: Path) -> None:
    model = small_gguf(tmp_path / "source" / "tiny-test.gguf", 4)
    async with Relay(RelaySettings(port=0, home=tmp_path / "relay", **MESH_FIELDS)) as relay:
        behind_nat = {"relays": [relay.url], **MESH_FIELDS}
        async with (
            start_node(name="natted", home=_holding(tmp_path / "natted", model), model_chunk_bytes=CHUNK, **behind_nat) as holder,
            start_node(name="newcomer", **behind_nat) as puller,
        ):

            def relayed_holder() -> bool:
                peer = puller.peers.get(holder.peer_id)
                return peer is not None and bool(peer.card.shares)

            await wait_until(relayed_holder, "the holder's card, with its shares, through the relay")
            peer = puller.peers.get(holder.peer_id)
            assert peer is not None and peer.via == "relay"
            report = await pull_model(puller, "tiny-test", tmp_path / "newcomer" / "models")
    assert report.path is not None and report.path.read_bytes() == model.read_bytes()
    assert report.holders[holder.peer_id].chunks == len(report.manifest.chunks)


async def test_a_full_disk_is_one_clear_error_and_nothing_lands_in_models(start_node: Callable[..., AbstractAsyncContextManager[Node]], tmp_path: Path) -> None:
    model = small_gguf(tmp_path / "source" / "tiny-test.gguf", 4)
    small_disk = tmp_path / "small-disk"
    small_disk.mkdir()
    mounted = await anyio.run_process(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small_disk)], check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        async with start_node(name="holder", home=_holding(tmp_path / "holder", model), model_chunk_bytes=CHUNK) as holder, start_node(name="newcomer") as puller:
            await wait_until(lambda: bool(holder.card().shares))
            await puller.add_peer(holder.mcp_url)
            with pytest.raises(PullError, match=r"not enough disk space for tiny-test .*run the same pull again") as caught:
                await pull_model(puller, "tiny-test", small_disk / "models")
        assert "\n" not in str(caught.value)
        assert not list((small_disk / "models").glob("*.gguf"))
    finally:
        await anyio.run_process(["umount", str(small_disk)], check=False)
