"""`mcpfed peers` (from the state dir, from a URL, live) and discovery flags of `mcpfed serve`."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import anyio.to_thread
import pytest

from federation.node import Node
from tests.support.cli import mcpfed
from tests.support.paths import REPO
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

StartNode = Callable[..., AbstractAsyncContextManager[Node]]
_ENV = os.environ | {"COLUMNS": "160"}  # wide enough that rich does not truncate ids


async def test_peers_shows_the_table_from_a_url_and_from_the_state_dir(mdns_node: StartNode) -> None:
    async with mdns_node(name="desk") as desk, mdns_node(name="laptop") as laptop:
        await wait_until(lambda: laptop.peer_id in desk.peers, "the laptop admitted")
        by_url = await mcpfed("peers", "--url", desk.mcp_url, env=_ENV)

        async def stored() -> bool:
            return bool(await anyio.to_thread.run_sync(desk.store.peers, desk.peer_id))

        await wait_until(stored, "the table saved to the store")
        by_home = await mcpfed("peers", "--home", str(desk.home), env=_ENV)
    for result in (by_url, by_home):
        row = next(line for line in result.stdout.splitlines() if "laptop" in line)
        assert result.returncode == 0
        assert laptop.peer_id in row and f"127.0.0.1:{laptop.port}" in row and "mdns" in row and " up " in row


async def test_peers_watch_follows_a_peer_arriving_live(mdns_node: StartNode) -> None:
    async with mdns_node(name="hub") as hub:
        command = [sys.executable, "-m", "federation.cli", "peers", "--watch", "--url", hub.url]
        async with await anyio.open_process(command, cwd=REPO, env=_ENV) as watcher:
            await anyio.sleep(1.0)  # the watcher connects and shows an empty table
            async with mdns_node(name="newcomer") as newcomer:
                await wait_until(lambda: newcomer.peer_id in hub.peers, "the newcomer admitted")
                await anyio.sleep(0.5)
                watcher.send_signal(signal.SIGINT)
                with anyio.fail_after(10):
                    await watcher.wait()
                assert watcher.stdout is not None
                shown = b""
                async for chunk in watcher.stdout:
                    shown += chunk
    assert b"newcomer" in shown and newcomer.peer_id.encode() in shown


async def test_peers_of_a_peer_that_is_not_running_is_a_clear_error() -> None:
    result = await mcpfed("peers", "--url", "http://127.0.0.1:9", env=_ENV)
    assert result.returncode == 1
    assert "Is `mcpfed serve` running there?" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flags", "code", "complaint"),
    [
        (["--mdns", "nosuch0"], 1, "does not have"),
        (["--peer", "not-a-url"], 2, "not a peer URL"),
    ],
)
async def test_serve_refuses_bad_discovery_flags_with_one_line(flags: list[str], code: int, complaint: str) -> None:
    result = await mcpfed("serve", "--model", "none", "--port", "0", *flags, env=_ENV)
    assert result.returncode == code
    assert complaint in result.stderr and "Traceback" not in result.stderr
