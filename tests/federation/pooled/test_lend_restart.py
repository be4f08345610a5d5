"""A `--lend` peer whose ggml RPC server dies starts it again, so its card never offers a dead port."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from federation.pooled.lending import Lending
from servers import ggml_rpc
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.skipif(not ggml_rpc.supports_rpc(), reason="llama-cpp-python built without -DGGML_RPC=ON")]


async def test_a_killed_rpc_server_is_started_again_and_answers(tmp_path: Path) -> None:
    async with Lending(mem_bytes=64 * 2**20, cache_dir=tmp_path, threads=1, require_proof=False) as lending:
        first = lending.pid
        assert first is not None and lending.endpoint is not None
        os.kill(first, signal.SIGKILL)

        async def serving_again() -> bool:
            endpoint = lending.endpoint
            if lending.pid == first or endpoint is None:
                return False
            await anyio.to_thread.run_sync(ggml_rpc.probe, endpoint)
            return True

        await wait_until(serving_again, "a new RPC server answers ggml's HELLO", timeout=30.0)
        assert lending.offer().device == "cpu" or ggml_rpc.local_gpu_present()
