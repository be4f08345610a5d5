"""`mcpfed serve --copies N`: N peers from one command that see each other, and all stop with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from tests.support.discovery import PeerProcess, SpawnPeer
from tests.support.paths import REPO
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

_COPIES = 3


async def _urls(peer: PeerProcess, count: int) -> list[str]:
    """The first copy's URL `spawn_peer` read, and the others' lines after it."""
    assert peer.process.stdout is not None
    buffered = b""
    with anyio.fail_after(30):
        while buffered.count(b"\n") < count - 1:
            buffered += await peer.process.stdout.receive()
    return [peer.mcp_url, *buffered.decode().split()]


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _gone(pids: list[int]) -> bool:
    """Every pid has exited and been reaped (a zombie still has its /proc entry)."""
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


async def _up_names(http: httpx.AsyncClient, url: str) -> set[str]:
    body = (await http.get(url.removesuffix("/mcp") + "/peers")).json()
    return {p["name"] for p in body["peers"] if p["status"] == "up"}


async def test_copies_see_each_other_and_all_stop_on_one_sigterm(spawn_peer: SpawnPeer) -> None:
    fleet = await spawn_peer("fl", "--copies", str(_COPIES))
    urls = await _urls(fleet, _COPIES)
    copies = _children(fleet.process.pid)
    assert len(set(urls)) == _COPIES and len(copies) == _COPIES, "one process and one port per copy"
    names = {f"fl-{i}" for i in range(_COPIES)}
    async with httpx.AsyncClient(trust_env=False) as http:

        async def all_see_all() -> bool:
            seen = [await _up_names(http, url) for url in urls]
            return all(len(s) == _COPIES - 1 and s < names for s in seen)

        await wait_until(all_see_all, "every copy lists the others up", timeout=30)
        ids = {(await http.get(url.removesuffix("/mcp") + "/health")).json()["id"] for url in urls}
    assert len(ids) == _COPIES, "each copy has its own identity"
    fleet.process.send_signal(signal.SIGTERM)
    with anyio.fail_after(20):
        assert await fleet.process.wait() == 0
    await wait_until(lambda: _gone(copies), "every copy exited with the parent")
    assert fleet.log.read_text().count("stopped") == _COPIES, "each copy stopped cleanly"


async def test_copies_do_not_outlive_a_killed_parent(spawn_peer: SpawnPeer) -> None:
    fleet = await spawn_peer("fk", "--copies", "2", "--mdns", "off")
    await _urls(fleet, 2)
    copies = _children(fleet.process.pid)
    fleet.process.kill()
    await fleet.process.wait()
    await wait_until(lambda: _gone(copies), "every copy exited after its parent was SIGKILLed", timeout=20)


def test_copies_with_one_database_for_all_are_refused_in_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "federation.cli", "serve", "--model", "none", "--home", str(tmp_path), "--copies", "2", "--db", f"sqlite:///{tmp_path}/x.db"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, env=os.environ | {"COLUMNS": "300"})
    assert result.returncode == 2
    assert "--copies needs a store per copy" in result.stderr and "Traceback" not in result.stderr
