"""`mcpfed serve --copies N`: N peers from one command that see each other, and all stop with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import Process

from tests.support.discovery import FAST_HEALTH_INTERVAL
from tests.support.paths import REPO
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

_COPIES = 3


@asynccontextmanager
async def _fleet(tmp_path: Path, mesh: str, count: int, *args: str) -> AsyncIterator[tuple[Process, list[str], Path]]:
    """`mcpfed serve --copies count` in a child process: (the parent, each copy's URL, its stderr log); killed at the end."""
    log = tmp_path / "fleet.log"
    command = [sys.executable, "-m", "federation.cli", "serve", "--model", "none", "--port", "0", "--name", "fl", "--home", str(tmp_path / "fl"), "--copies", str(count), *args]
    environment = os.environ | {"MCPFED_MESH": mesh, "MCPFED_HEALTH_INTERVAL": str(FAST_HEALTH_INTERVAL), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as stderr:
        process = await anyio.open_process(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=stderr)
    try:
        assert process.stdout is not None
        buffered = b""
        with anyio.fail_after(60):
            while buffered.count(b"\n") < count:
                buffered += await process.stdout.receive()
        yield process, buffered.decode().split(), log
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _gone(pids: list[int]) -> bool:
    """Every pid has exited and been reaped (a zombie still has its /proc entry)."""
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


async def _up_names(http: httpx.AsyncClient, url: str) -> set[str]:
    body = (await http.get(url.removesuffix("/mcp") + "/peers")).json()
    return {p["name"] for p in body["peers"] if p["status"] == "up"}


async def test_copies_see_each_other_and_all_stop_on_one_sigterm(tmp_path: Path, mesh: str) -> None:
    async with _fleet(tmp_path, mesh, _COPIES) as (fleet, urls, log):
        copies = _children(fleet.pid)
        assert len(set(urls)) == _COPIES and len(copies) == _COPIES, "one process and one port per copy"
        names = {f"fl-{i}" for i in range(_COPIES)}
        async with httpx.AsyncClient(trust_env=False) as http:

            async def all_see_all() -> bool:
                seen = [await _up_names(http, url) for url in urls]
                return all(len(s) == _COPIES - 1 and s < names for s in seen)

            await wait_until(all_see_all, "every copy lists the others up", timeout=30)
            ids = {(await http.get(url.removesuffix("/mcp") + "/health")).json()["id"] for url in urls}
        assert len(ids) == _COPIES, "each copy has its own identity"
        fleet.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await fleet.wait() == 0
        await wait_until(lambda: _gone(copies), "every copy exited with the parent")
        assert log.read_text().count("stopped") == _COPIES, "each copy stopped cleanly"


async def test_copies_do_not_outlive_a_killed_parent(tmp_path: Path, mesh: str) -> None:
    async with _fleet(tmp_path, mesh, 2, "--mdns", "off") as (fleet, _, _):
        copies = _children(fleet.pid)
        fleet.kill()
        await fleet.wait()
        await wait_until(lambda: _gone(copies), "every copy exited after its parent was SIGKILLed", timeout=20)


def test_copies_with_one_database_for_all_are_refused_in_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "federation.cli", "serve", "--model", "none", "--home", str(tmp_path), "--copies", "2", "--db", f"sqlite:///{tmp_path}/x.db"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, env=os.environ | {"COLUMNS": "300"})
    assert result.returncode == 2
    assert "--copies needs a store per copy" in result.stderr and "Traceback" not in result.stderr
