"""ggml's RPC backend through ctypes, on the real library: what counts as a GPU, the wire probe, the lender's cache bound."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from servers import ggml_rpc
from servers.embedded_models import model_path
from servers.llama_engine import LlamaEngine
from servers.rpc_lender import prune_cache

pytestmark = pytest.mark.skipif(not ggml_rpc.supports_rpc(), reason="llama-cpp-python was built without -DGGML_RPC=ON (make builds it with RPC; see README)")


def _has_gpu_device() -> bool:
    lib = ggml_rpc.ggml_library()
    return any(lib.ggml_backend_dev_type(lib.ggml_backend_dev_get(i)) == 1 for i in range(lib.ggml_backend_dev_count()))


@pytest.mark.anyio
async def test_auto_gpu_layers_do_not_mistake_rpc_for_a_gpu() -> None:
    import llama_cpp

    if _has_gpu_device():
        pytest.skip("this machine has a GPU: auto offloading is right here")
    assert llama_cpp.llama_supports_gpu_offload(), "precondition: an RPC build claims GPU offload"
    assert not ggml_rpc.local_gpu_present()
    async with LlamaEngine(model_path("default"), n_ctx=256) as engine:
        await engine.wait_ready()
        assert engine.n_gpu_layers == 0
        assert engine.describe()["gpu_offload_supported"] is False


def test_probe_names_what_is_wrong_with_an_endpoint() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(ggml_rpc.LenderUnreachable, match=f"cannot reach the lender at 127.0.0.1:{port}"):
        ggml_rpc.probe(f"127.0.0.1:{port}")

    # Something that listens but is not a ggml RPC server of our version: it answers HELLO with version 9.9.9.
    with socket.create_server(("127.0.0.1", 0)) as impostor:

        def answer() -> None:
            connection, _ = impostor.accept()
            with connection:
                connection.recv(64)
                connection.sendall((28).to_bytes(8, "little") + bytes([9, 9, 9]) + bytes(25))

        thread = threading.Thread(target=answer)
        thread.start()
        endpoint = f"127.0.0.1:{impostor.getsockname()[1]}"
        with pytest.raises(ggml_rpc.LenderUnreachable, match=r"speaks ggml RPC 9\.9\.9, not 7\.x"):
            ggml_rpc.probe(endpoint)
        thread.join()


def test_the_lender_cache_is_pruned_oldest_first(tmp_path: Path) -> None:
    for age, name in enumerate(["newest", "middle", "oldest"]):
        (tmp_path / name).write_bytes(bytes(1000))
        os.utime(tmp_path / name, (1_000_000 - age * 100, 1_000_000 - age * 100))
    assert prune_cache(tmp_path, 2500) == 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["middle", "newest"]
    assert prune_cache(tmp_path, 5000) == 0
