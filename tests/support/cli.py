"""`mcpfed …` as a child process, the way a user runs it: one wrapper, blocking or async."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

import anyio

from tests.support.paths import REPO

EXIT_BOUND = 120.0
"""Seconds a command may take before the test fails (a liveness bound: a loaded machine is slow, not wrong)."""


def _command(args: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "federation.cli", *args]


def mcpfed_sync(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `mcpfed ARGS…` to completion from a plain (non-async) test; `env` replaces the environment when given."""
    return subprocess.run(_command(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=EXIT_BOUND, check=False)


async def mcpfed(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `mcpfed ARGS…` to completion without blocking the event loop (the test may be serving the peer it talks to)."""
    with anyio.fail_after(EXIT_BOUND):
        done = await anyio.run_process(_command(args), cwd=REPO, env=env, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    """The command failed with `code` and one `error: …` line that `says` it, never a traceback."""
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), done.stderr
    assert says in lines[-1]
