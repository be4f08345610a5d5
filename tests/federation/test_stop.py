"""Stopping `mcpfed serve` with SIGTERM (`docker stop`, systemd) or SIGINT (Ctrl-C).

A real process each time, since a signal is a process matter: mid-generation,
the caller gets a tool error saying the peer is shutting down (not a stream
that ends without a response), the ledger keeps the row, an mDNS browser on
loopback hears the goodbye, and the process exits 0 (it used to segfault).
While the model still loads, the same signal is a clean stop too (it used to
kill the process before its goodbye). Each case runs several times: a stop
that works by luck would show here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
from mcp import Client
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from federation.const import SERVICE_TYPE
from federation.store import CallRecord, Store, database_url
from servers.llama_engine import default_model_path
from tests.support.discovery import PeerProcess
from tests.support.paths import REPO

pytestmark = pytest.mark.anyio

RUNS = range(3)
DEADLINE = 60.0  # liveness bound for a start or a stop, never a timing assertion
_COUNTING = {"prompt": "Count from 1 to 1000: 1, 2, 3, 4,", "max_tokens": 900, "temperature": 0.0}


class LoopbackBrowser:
    """What an mDNS browser on loopback hears of instances whose name starts with `prefix`."""

    def __init__(self, zc: AsyncZeroconf, prefix: str) -> None:
        self._zc = zc
        self._prefix = prefix
        self.added: list[str] = []
        self.removed: list[str] = []

    def on_change(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if not name.startswith(self._prefix):
            return
        if state_change is ServiceStateChange.Added:
            self.added.append(name)
        elif state_change is ServiceStateChange.Removed:
            self.removed.append(name)
        # Updated: the peer re-announced a changed TXT (its load changes mid-generation); neither a join nor a leave

    async def wait_added(self) -> str:
        with anyio.fail_after(DEADLINE):
            while not self.added:
                await anyio.sleep(0.02)
        return self.added[0]

    async def wait_goodbye(self) -> None:
        """A removal within the deadline is a goodbye packet: a vanished process's records live for minutes.

        Then a while more of listening: nothing may bring the peer back after its goodbye
        (an announcement still being repeated once did).
        """
        with anyio.move_on_after(10):
            while not self.removed:
                await anyio.sleep(0.02)
        await anyio.sleep(1.5)
        assert self.removed == self.added, "no mDNS goodbye heard, or the peer came back after it"

    async def port_of(self, name: str) -> int:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        assert await info.async_request(self._zc.zeroconf, 3000), f"{name} did not resolve"
        assert info.port is not None
        return info.port


@asynccontextmanager
async def loopback_browser(prefix: str) -> AsyncIterator[LoopbackBrowser]:
    zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    browser = LoopbackBrowser(zc, prefix)
    service_browser = AsyncServiceBrowser(zc.zeroconf, SERVICE_TYPE, handlers=[browser.on_change])
    try:
        yield browser
    finally:
        with anyio.CancelScope(shield=True):
            await service_browser.async_cancel()
            await zc.async_close()


@asynccontextmanager
async def serve(tmp_path: Path, *args: str) -> AsyncIterator[tuple[PeerProcess, LoopbackBrowser, Path]]:
    """`mcpfed serve` on port 0 with its own home, name and mesh, and a browser for its mDNS records; killed if it outlives the test."""
    name = f"stop-{uuid.uuid4().hex[:8]}"
    home = tmp_path / name
    log = tmp_path / f"{name}.log"
    command = [sys.executable, "-m", "federation.cli", "serve", "--port", "0", "--ctx", "1024", "--name", name, "--home", str(home), *args]
    environment = os.environ | {"MCPFED_MESH": f"test-{name}", "PYTHONUNBUFFERED": "1"}
    async with loopback_browser(f"{name}-") as browser:
        with log.open("wb") as stderr:
            process = await anyio.open_process(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=stderr)
        peer = PeerProcess(process, log)
        try:
            yield peer, browser, home
        finally:
            with anyio.CancelScope(shield=True):
                await peer.stop(signal.SIGKILL)


async def wait_exit(peer: PeerProcess) -> int:
    with anyio.fail_after(DEADLINE):
        return await peer.process.wait()


async def served_rows(home: Path) -> list[CallRecord]:
    store = Store(database_url(home))
    try:
        return await anyio.to_thread.run_sync(store.calls)
    finally:
        store.close()


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize(("signum", "mode"), [(signal.SIGTERM, "auto"), (signal.SIGINT, "auto"), (signal.SIGTERM, "legacy")])
async def test_a_signal_mid_generation_answers_the_caller_says_goodbye_flushes_and_exits_0(
    tmp_path: Path, signum: signal.Signals, mode: str, run: int
) -> None:
    async with serve(tmp_path) as (peer, browser, home):
        url = await peer.read_url()  # printed once the model is ready
        await browser.wait_added()
        pieces: list[str] = []

        async def progress(value: float, total: float | None, message: str | None) -> None:
            if not pieces:
                peer.process.send_signal(signum)  # tokens are streaming: stop the peer now
            pieces.append(message or "")

        async with Client(url, mode=mode) as client:
            result = await client.call_tool("generate", _COUNTING, progress_callback=progress)
        code = await wait_exit(peer)
        await browser.wait_goodbye()
        log = peer.log.read_text()
    assert code == 0, log
    text = "".join(c.text for c in result.content if c.type == "text")
    assert result.is_error and f"peer {home.name} is shutting down; retry on another peer." in text, text
    assert pieces, "the generation had started streaming"
    assert "Traceback" not in log, log
    if mode == "auto":  # a legacy client's notification stream (GET) may still be open when HTTP stops: uvicorn cuts it
        assert "Cancel 1 running task" not in log, log
    rows = await served_rows(home)
    assert [(r.tool, r.outcome) for r in rows] == [("generate", "error")] and "shutting down" in (rows[0].error or "")


@pytest.fixture(scope="module")
def slow_loading_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model with 2 GiB of sparse zeros after it: llama.cpp still loads it, but reading the hole takes seconds.

    That gives a stop a wide, certain window in which the model is still loading.
    """
    target = tmp_path_factory.mktemp("slow") / "slow-loading.gguf"
    shutil.copyfile(default_model_path(), target)
    with target.open("r+b") as stream:
        stream.truncate(target.stat().st_size + (2 << 30))
    return target


@pytest.mark.parametrize("run", RUNS)
async def test_sigterm_while_the_model_loads_exits_0_with_a_goodbye(tmp_path: Path, slow_loading_model: Path, run: int) -> None:
    async with serve(tmp_path, "--model", str(slow_loading_model)) as (peer, browser, _home):
        instance = await browser.wait_added()  # advertised as soon as it serves, while the model loads
        port = await browser.port_of(instance)
        async with httpx.AsyncClient(trust_env=False) as http:
            health = (await http.get(f"http://127.0.0.1:{port}/health")).json()
        assert health["model"] == "loading"
        peer.process.send_signal(signal.SIGTERM)
        code = await wait_exit(peer)
        await browser.wait_goodbye()
        log = peer.log.read_text()
    assert code == 0, log
    assert "SIGTERM: stopping" in log and " ready" not in log and "Traceback" not in log, log
