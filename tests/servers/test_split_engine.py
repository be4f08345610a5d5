"""A model split across real ggml RPC lenders on loopback: same tokens as unsplit, a lost lender named, the host alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from servers import ggml_rpc
from servers.embedded_models import model_path
from servers.ggml_rpc import supports_rpc
from servers.llama_engine import EngineState, LlamaEngine, ModelUnavailable
from servers.rpc_lender import RpcLender
from servers.split_engine import LenderLost, SplitEngine
from tests.support.models import BASE_MODEL
from tests.support.paths import REPO

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not supports_rpc(), reason="llama-cpp-python was built without -DGGML_RPC=ON (make builds it with RPC; see README)"),
]

N_CTX = 512
PROMPT = "Once upon a time"  # with repacking on, greedy output drifts from the unsplit model's at its 4th token
TOKENS = 32
MODEL = model_path(BASE_MODEL)
"""Gemma 3 270M (18 blocks + the output layer = 19 layers to place): its Q8_0 weights are what the CPU backend
repacks, so it is the model whose split tokens drift from the unsplit ones unless repacking is off."""


@pytest.fixture(scope="module")
async def reference() -> str:
    """The unsplit engine's greedy answer, the one every placement must give (without weight repacking, as a split model runs)."""
    async with LlamaEngine(MODEL, n_ctx=N_CTX, n_threads=1, repack=False) as engine:
        await engine.wait_ready()
        return (await engine.complete(PROMPT, max_tokens=TOKENS, temperature=0.0)).text


@pytest.fixture(scope="module")
async def lenders(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[RpcLender, RpcLender]]:
    cache = tmp_path_factory.mktemp("rpc-cache")
    async with RpcLender(mem_mb=1024, cache_dir=cache, threads=1) as first, RpcLender(mem_mb=1024, cache_dir=cache, threads=1) as second:
        yield first, second


@pytest.mark.parametrize(("first", "second"), [(6, 5), (1, 1), (9, 10), (12, 7)], ids=["host-most", "one-each", "all-lent", "output-lent"])
async def test_a_split_model_gives_the_unsplit_tokens(reference: str, lenders: tuple[RpcLender, RpcLender], first: int, second: int) -> None:
    placement = [(lenders[0].endpoint, first), (lenders[1].endpoint, second)]
    async with SplitEngine(MODEL, placement, n_ctx=N_CTX, n_threads=1) as engine:
        await engine.wait_ready()
        pieces: list[str] = []

        async def collect(text: str) -> None:
            pieces.append(text)

        done = await engine.complete(PROMPT, max_tokens=TOKENS, temperature=0.0, on_token=collect)
    assert done.text == reference
    assert "".join(pieces) == done.text
    assert done.usage.completion_tokens == TOKENS


async def test_describe_says_where_the_layers_are(lenders: tuple[RpcLender, RpcLender]) -> None:
    placement = [(lenders[0].endpoint, 6), (lenders[1].endpoint, 5)]
    async with SplitEngine(MODEL, placement, n_ctx=N_CTX, n_threads=1) as engine:
        await engine.wait_ready()
        described = engine.describe()
    assert described["state"] == "ready" and described["sha256"]
    assert [(p["endpoint"], p["layers"]) for p in described["placement"]] == [("local", 8), (lenders[0].endpoint, 6), (lenders[1].endpoint, 5)]
    assert all(p["bytes"] > 0 for p in described["placement"])


async def test_a_lender_killed_mid_generation_is_named_and_the_model_can_be_re_placed(reference: str, tmp_path: Path) -> None:
    async with RpcLender(mem_mb=1024, cache_dir=tmp_path, threads=1) as kept, RpcLender(mem_mb=1024, cache_dir=tmp_path, threads=1) as doomed:
        async with SplitEngine(MODEL, [(kept.endpoint, 6), (doomed.endpoint, 5)], n_ctx=N_CTX, n_threads=1) as engine:
            await engine.wait_ready()

            async def kill_on_first_token(text: str) -> None:
                if doomed.pid and engine.state is EngineState.READY:
                    os.kill(doomed.pid, signal.SIGKILL)

            with pytest.raises(LenderLost) as lost:
                await engine.complete(PROMPT, max_tokens=200, temperature=0.0, on_token=kill_on_first_token)
            assert doomed.endpoint in str(lost.value) and kept.endpoint not in str(lost.value)
            assert "re-place" in str(lost.value)
            assert lost.value.endpoints == [doomed.endpoint]
            assert engine.state is EngineState.FAILED

            await engine.replace([(kept.endpoint, 11)])
            done = await engine.complete(PROMPT, max_tokens=TOKENS, temperature=0.0)
            assert done.text == reference
            assert engine.describe()["placement"][1]["endpoint"] == kept.endpoint


async def test_an_unreachable_lender_is_named_before_the_model_loads(tmp_path: Path) -> None:
    async with RpcLender(mem_mb=64, cache_dir=tmp_path) as lender:
        gone = lender.endpoint  # a port that was just served and is now closed
    async with SplitEngine(MODEL, [(gone, 4)], n_ctx=N_CTX) as engine:
        with pytest.raises(ModelUnavailable, match=f"cannot reach the lender at {gone}"):
            await engine.wait_ready()
        assert engine.state is EngineState.FAILED


@pytest.mark.parametrize(("mem_mb", "layers"), [(1, 19), (200, 6)], ids=["weights", "working-buffers"])
async def test_a_placement_beyond_the_lenders_memory_fails_the_load_naming_the_lender_and_lend_mem(mem_mb: int, layers: int, tmp_path: Path) -> None:
    """200 MiB holds 6 layers' weights but not the logits buffer of the last device (512 MiB): llama.cpp alone would blame the file."""
    async with RpcLender(mem_mb=mem_mb, cache_dir=tmp_path, threads=1) as small:
        async with SplitEngine(MODEL, [(small.endpoint, layers)], n_ctx=N_CTX, n_threads=1) as engine:
            with pytest.raises(ModelUnavailable, match=rf"lender {small.endpoint} could not allocate \d+ MiB .* --lend-mem at least \d+ MiB larger"):
                await engine.wait_ready()
            assert engine.state is EngineState.FAILED
            assert "corrupt" not in (engine.error or "")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::1", "localhost"])
def test_a_lender_refuses_to_bind_anything_but_ipv4_loopback(host: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "servers.rpc_lender", "--host", host, "--port", "5999", "--mem-mb", "64", "--cache-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith(f"error: refusing to serve ggml RPC on {host!r}")


def test_bad_placements_are_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="has 19; place fewer"):
        SplitEngine(MODEL, [("127.0.0.1:1", 10), ("127.0.0.1:2", 10)])
    with pytest.raises(ValueError, match="layers at least 1"):
        SplitEngine(MODEL, [("127.0.0.1:1", 0)])
    with pytest.raises(ValueError, match="placement is empty"):
        SplitEngine(MODEL, [])


async def test_a_lender_says_which_device_it_lends(tmp_path: Path) -> None:
    """The CPU here (no GPU on this machine); a ggml GPU device, where one exists, is served and named instead."""
    async with RpcLender(mem_mb=64, cache_dir=tmp_path, threads=1) as lender:
        assert lender.device == ggml_rpc.device_name(ggml_rpc.lend_device())
        assert (lender.device == "cpu") is not ggml_rpc.local_gpu_present()
