"""`mcpfed pull`, `mcpfed models --mesh` and `mcpfed serve --model sha256:…` as a user runs them."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import pytest

from federation.node import Node
from servers.embedded_models import model_path
from tests.support.cli import assert_one_line_error, mcpfed
from tests.support.models import small_gguf
from tests.support.processes import serve_process
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


def _holding(home: Path, model: Path) -> Path:
    (home / "models").mkdir(parents=True, exist_ok=True)
    (home / "models" / model.name).symlink_to(model)
    return home


async def test_pull_fetches_the_model_and_models_mesh_lists_it(start_node: Callable[..., AbstractAsyncContextManager[Node]], tmp_path: Path, env: dict[str, str]) -> None:
    model = small_gguf(tmp_path / "source" / "tiny-test.gguf", 2)
    async with start_node(name="holder", home=_holding(tmp_path / "holder", model), model_chunk_bytes=64 * 1024) as holder:
        await wait_until(lambda: bool(holder.card().shares))
        peer = ("--peer", holder.url)
        listed = await mcpfed("models", "--mesh", env=env | {"MCPFED_PEER": holder.url, "MCPFED_MDNS": "off"})
        unknown = await mcpfed("pull", "llama-70b", *peer, "--mdns", "off", env=env)
        pulled = await mcpfed("pull", "tiny-test", *peer, "--mdns", "off", env=env)
    sha256 = holder.model_store.shared()[0].sha256
    assert listed.returncode == 0, listed.stderr
    assert "tiny-test" in listed.stdout and sha256 in listed.stdout and "holder" in listed.stdout
    assert_one_line_error(unknown, 1, "nobody in the mesh holds 'llama-70b'; the mesh holds: tiny-test")
    assert pulled.returncode == 0, pulled.stderr
    path = Path(pulled.stdout.strip())
    assert path == Path(env["MCPFED_HOME"]) / "models" / "tiny-test.gguf"
    assert path.read_bytes() == model.read_bytes()


async def test_serve_pulls_the_embedded_model_from_the_mesh_when_it_is_not_on_disk(
    start_node: Callable[..., AbstractAsyncContextManager[Node]], tmp_path: Path
) -> None:
    embedded = await anyio.to_thread.run_sync(model_path, "smollm2-135m")
    async with start_node(name="holder", home=_holding(tmp_path / "holder", embedded), model_chunk_bytes=1 << 20) as holder:
        await wait_until(lambda: bool(holder.card().shares), "the holder to hash the embedded model", timeout=60)
        sha256 = holder.model_store.shared()[0].sha256
        async with serve_process(tmp_path / "homes", "fresh", "--model", f"sha256:{sha256}", "--peer", holder.url) as (url, _):
            assert url.endswith("/mcp")
    pulled = tmp_path / "homes" / "fresh" / "models" / embedded.name
    assert pulled.read_bytes() == embedded.read_bytes()
