"""The stdio gateway as Claude Desktop runs it: spawned by an MCP client, legacy handshake, tools listed once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from federation.node import Node
from federation.settings import PeerSettings

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
NOTES = ROOT / "examples" / "notes"


@pytest.fixture
def mesh() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def model_on_mdns(make_settings: Callable[..., PeerSettings], mesh: str) -> AsyncIterator[Node]:
    """A model peer announcing itself on loopback mDNS in this test's mesh: the gateway must find it alone."""
    async with Node(make_settings(name="model", model="default", n_ctx=2048, mdns="auto", mesh=mesh)) as node:
        await node.wait_ready()
        yield node


def gateway(home: Path, mesh: str, *args: str) -> StdioServerParameters:
    """`mcpfed gateway` as a client config starts it, in this test's mesh and state dir."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "federation.cli", "gateway", *args],
        env=dict(os.environ) | {"MCPFED_HOME": str(home), "MCPFED_MESH": mesh},
        cwd=ROOT,
    )


async def test_the_first_tools_list_already_has_every_peers_tools_and_the_first_ask_works(
    model_on_mdns: Node, make_settings: Callable[..., PeerSettings], mesh: str, tmp_path: Path
) -> None:
    """A stock client lists tools once: the peer found over mDNS and the one named with --peer are in that one list.

    The named peer is still starting when the gateway first knocks (its port
    accepts and drops the connection), as when Claude Desktop starts at login
    before `mcpfed serve` has; the gateway must wait for its retry, not answer without it.
    """
    log = tmp_path / "gateway.log"
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as doorway, anyio.create_task_group() as task_group:
        port = doorway.extra(anyio.abc.SocketAttribute.local_port)
        (door,) = doorway.listeners
        first_knock, done = anyio.Event(), anyio.Event()

        async def start_notes_after_the_first_knock() -> None:
            connection = await door.accept()
            await connection.aclose()
            await doorway.aclose()
            first_knock.set()
            async with Node(make_settings(name="notes", notes=NOTES, mesh=mesh, port=port)):
                await done.wait()

        params = gateway(tmp_path / "state", mesh, "--peer", f"http://127.0.0.1:{port}/mcp")
        task_group.start_soon(start_notes_after_the_first_knock)
        with log.open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
                first = {t.name for t in (await client.list_tools()).tools}
                asked = await client.call_tool("mesh_ask", {"prompt": "Say hi.", "max_tokens": 4})
                called = await client.call_tool("notes__search_notes", {"query": "relay"})
        done.set()
    assert first_knock.is_set()
    assert {"model__chat", "model__generate", "notes__search_notes", "notes__read_note"} <= first
    assert not asked.is_error and asked.structured_content["peer"] == model_on_mdns.peer_id
    assert not called.is_error and called.structured_content["hits"]
    assert "gateway ready: 2 peers (model, notes) in " in log.read_text()


async def test_a_named_peer_in_another_mesh_stops_the_gateway_with_the_reason(start_node: Any, mesh: str, tmp_path: Path) -> None:
    async with start_node(name="stranger", mesh="someone-elses") as stranger:
        params = gateway(tmp_path, mesh, "--peer", stranger.mcp_url, "--mdns", "off")
        with anyio.fail_after(30):
            finished = await anyio.run_process([params.command, *params.args], env=params.env, cwd=params.cwd, stdin=subprocess.DEVNULL, check=False)
    complaint = finished.stderr.decode()
    assert finished.returncode == 1, complaint
    assert f"peer {stranger.mcp_url} was refused" in complaint and "someone-elses" in complaint
    assert "Traceback" not in complaint and not finished.stdout, "stdout carries MCP only"
