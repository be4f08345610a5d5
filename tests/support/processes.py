"""Real `mcpfed` child processes for tests that need separate event loops or signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from tests.support.paths import REPO


@asynccontextmanager
async def serve_process(home: Path, name: str, *args: str, start_timeout: float = 60.0) -> AsyncIterator[tuple[str, subprocess.Popen[str]]]:
    """`mcpfed serve --port 0 --name NAME --mdns off ARGS…` in its own home; yields (MCP URL, process).

    The URL is the first line `serve` prints. The process is stopped with
    SIGKILL on exit if it is still running (tests that test stopping signal it themselves).
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "federation.cli", "serve", "--port", "0", "--name", name, "--mdns", "off", *args],
        cwd=REPO,
        env=os.environ | {"MCPFED_HOME": str(home / name)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        with anyio.fail_after(start_timeout):
            url = (await anyio.to_thread.run_sync(process.stdout.readline)).strip()
        if not url:
            raise RuntimeError(f"mcpfed serve {name} exited with {process.wait()} before printing its URL")
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
