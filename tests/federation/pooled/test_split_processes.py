"""Pooled compute with real `mcpfed serve` processes: two `--lend` peers and a `--split auto` host.

A lender SIGKILLed mid-generation fails the call in progress with its name,
and takes its RPC server with it (no orphan goes on serving the port); the
host process lives on, plans again with the other lender, and answers the next call.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from federation.client import connect
from servers import ggml_rpc
from tests.support.processes import serve_process

pytestmark = [pytest.mark.anyio, pytest.mark.skipif(not ggml_rpc.supports_rpc(), reason="llama-cpp-python built without -DGGML_RPC=ON")]

SECRET = "pooled-compute-process-secret"
MESH = {"MCPFED_MESH": "pooledproc01", "MCPFED_MESH_NAME": "pool", "MCPFED_MESH_SECRET": SECRET}
AUTH = {"Authorization": f"Bearer {SECRET}"}


async def generate(url: str, max_tokens: int) -> Any:
    async with connect(url, headers=AUTH) as client:
        return await client.call_tool("generate", {"prompt": "The capital of France is", "max_tokens": max_tokens, "temperature": 0.0})


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_a_split_host_process_outlives_a_lender_killed_mid_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in MESH.items():
        monkeypatch.setenv(key, value)
    lend = ("--lend", "--lend-mem", "1GB", "--model", "none", "--threads", "1")
    async with serve_process(tmp_path, "lender1", *lend) as (url1, lender1), serve_process(tmp_path, "lender2", *lend) as (url2, _):
        split = ("--model", "gemma3-270m", "--ctx", "512", "--threads", "1", "--split", "auto", "--peer", url1, "--peer", url2)
        async with serve_process(tmp_path, "host", *split, start_timeout=120) as (host_url, host):
            first = await generate(host_url, 8)
            assert not first.is_error, first
            answer: list[Any] = []

            async def long_generation() -> None:
                answer.append(await generate(host_url, 400))

            rpc_servers = await anyio.to_thread.run_sync(children_of, lender1.pid)
            assert rpc_servers, "a --lend peer runs its RPC server as a child"
            async with anyio.create_task_group() as group:
                group.start_soon(long_generation)
                await anyio.sleep(1.5)
                lender1.send_signal(signal.SIGKILL)
            assert answer[0].is_error and "lender1" in answer[0].content[0].text, answer[0]
            with anyio.fail_after(10):
                while await anyio.to_thread.run_sync(lambda: any(alive(pid) for pid in rpc_servers)):
                    await anyio.sleep(0.1)
            with anyio.fail_after(90):
                while (again := await generate(host_url, 8)).is_error:
                    assert "still loading" in again.content[0].text or "lender" in again.content[0].text, again
                    await anyio.sleep(0.5)
            assert again.structured_content["text"] == first.structured_content["text"]
            assert host.poll() is None
