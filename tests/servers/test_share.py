"""Sharing a stdio MCP server: its tools on the peer, progress relayed, restarts, clean stops.

The child is `stdio_child.py`, a real MCP server run with this interpreter.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import mcp.types as types
import pytest
from mcp import Client

import servers.share
from federation.client import connect
from federation.node import Node
from servers.share import SharedStdioServer

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).with_name("stdio_child.py")
CHILD_COMMAND = shlex.join([sys.executable, str(CHILD)])
CRASHING_COMMAND = CHILD_COMMAND + " --crash"
NOTES = Path(__file__).resolve().parents[2] / "examples" / "notes"

SHARED_TOOLS = {"echo", "slow", "pid"}

StartNode = Callable[..., AbstractAsyncContextManager[Node]]


async def tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def child_pid(client: Client, *, not_: int | None = None) -> int:
    """The serving child's pid, waiting (bounded) while it restarts, and for one other than `not_`."""
    with anyio.fail_after(20):
        while True:
            result = await client.call_tool("pid", {})
            if not result.is_error and result.structured_content["result"] != not_:
                return result.structured_content["result"]
            await anyio.sleep(0.05)


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- through a real peer, called over HTTP ------------------------------------
async def test_shared_tools_are_listed_and_called_with_progress_relayed(start_node: StartNode) -> None:
    async with start_node(share=[f"kit={CHILD_COMMAND}"]) as node, connect(node.mcp_url) as client:
        assert await tool_names(client) >= SHARED_TOOLS
        echoed = await client.call_tool("echo", {"text": "through the peer"})
        assert echoed.structured_content == {"result": "through the peer"}
        steps: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            steps.append((progress, total, message))

        slow = await client.call_tool("slow", {"steps": 3}, progress_callback=on_progress)
        assert slow.structured_content == {"result": "done 3"}
        assert steps == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


async def test_allow_offers_only_the_named_tools_and_refuses_a_hidden_one_called_by_name(start_node: StartNode) -> None:
    async with start_node(share=[f"kit={CHILD_COMMAND}"], allow=["echo,slow"]) as node, connect(node.mcp_url) as client:
        offered = await tool_names(client)
        assert {"echo", "slow"} <= offered and "pid" not in offered
        assert {tool.name for tool in node.card().tools} == {"echo", "slow"}
        echoed = await client.call_tool("echo", {"text": "hi"})
        assert not echoed.is_error and echoed.structured_content == {"result": "hi"}
        hidden = await client.call_tool("pid", {})
    assert hidden.is_error
    assert hidden.content[0].text == "tool 'pid' is not shared: this peer offers only echo, slow of shared server 'kit' (--allow)."


async def test_allow_names_its_share_when_several_are_given(start_node: StartNode) -> None:
    async with start_node(share=[f"kit={CHILD_COMMAND}", f"more={CHILD_COMMAND}"], allow=["kit:echo", "kit:pid"]) as node:
        kit, more = node.shares
        assert {tool.name for tool in await kit.list_tools()} == {"echo", "pid"}, "two --allow for one share add up"
        assert {tool.name for tool in await more.list_tools()} == SHARED_TOOLS, "a share without --allow offers all its tools"


async def test_the_share_itself_refuses_a_tool_it_does_not_allow_before_the_child_sees_it() -> None:
    async with SharedStdioServer("kit", CHILD_COMMAND, allow=["echo"]) as share:
        assert [tool.name for tool in await share.list_tools()] == ["echo"]
        refused = await share.call_tool(None, "pid", {})  # type: ignore[arg-type]  # refused before any use of the caller's context
    assert refused.is_error and "tool 'pid' is not shared" in refused.content[0].text


async def test_killed_child_is_restarted_and_the_stopped_peer_leaves_no_child(start_node: StartNode) -> None:
    async with start_node(share=[f"kit={CHILD_COMMAND}"]) as node, connect(node.mcp_url) as client:
        first = await child_pid(client)
        os.kill(first, signal.SIGKILL)
        second = await child_pid(client, not_=first)
        assert (await client.call_tool("echo", {"text": "again"})).structured_content == {"result": "again"}
        assert node.shares[0].restarts == 1
        assert await tool_names(client) >= SHARED_TOOLS
    assert_gone(first)
    assert_gone(second)


async def test_child_crashing_at_start_is_explained_and_the_peer_serves_its_other_tools(start_node: StartNode) -> None:
    async with start_node(share=[f"broken={CRASHING_COMMAND}"], notes=NOTES) as node, connect(node.mcp_url) as client:
        error = node.shares[0].error
        assert error is not None
        assert CRASHING_COMMAND in error and "exited before completing the MCP handshake" in error
        assert "missing configuration file settings.toml" in error  # the child's stderr tail
        names = await tool_names(client)
        assert {"search_notes", "read_note"} <= names and not SHARED_TOOLS & names
        found = await client.call_tool("search_notes", {"query": "relay"})
        assert found.structured_content["hits"][0]["path"] == "relays.md"


async def test_child_that_keeps_dying_is_given_up_and_its_tools_withdrawn(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers.share, "RESTART_ATTEMPTS", 1)
    monkeypatch.setattr(servers.share, "RESTART_BACKOFF", (0.05, 0.05))
    changed = anyio.Event()

    async def on_message(message: object) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with start_node(share=[f"kit={CHILD_COMMAND}"]) as node:
        async with Client(node.mcp_url, mode="legacy", message_handler=on_message) as client:
            assert await tool_names(client) >= SHARED_TOOLS
            first = await child_pid(client)
            os.kill(first, signal.SIGKILL)
            os.kill(await child_pid(client, not_=first), signal.SIGKILL)
            with anyio.fail_after(10):
                await changed.wait()
            assert not SHARED_TOOLS & await tool_names(client)
            error = node.shares[0].error
            assert error is not None and "gave up after 1 restarts in a row" in error
            refused = await client.call_tool("pid", {})
            assert refused.is_error


# -- the provider on its own ------------------------------------------------------
async def test_child_that_never_answers_the_handshake_times_out_clearly() -> None:
    silent = shlex.join([sys.executable, "-c", "import time; time.sleep(60)"])
    async with SharedStdioServer("mute", silent, start_timeout=0.5) as share:
        assert share.error == f"shared server 'mute' (`{silent}`) did not complete the MCP handshake within 0.5 s"
        assert await share.list_tools() == []


async def test_missing_command_names_the_command() -> None:
    async with SharedStdioServer("fs", "no-such-mcp-server --root /tmp") as share:
        assert share.error == (
            "cannot start shared server 'fs' (`no-such-mcp-server --root /tmp`): "
            "'no-such-mcp-server' was not found; is it installed and on PATH?"
        )


async def test_child_stderr_is_logged_and_never_reaches_our_stdout(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="servers.share")
    async with SharedStdioServer("kit", CHILD_COMMAND) as share:
        assert share.running
    captured = capfd.readouterr()
    assert "stdio-child starting" not in captured.out + captured.err
    assert "[kit] stdio-child starting" in caplog.text


@pytest.mark.parametrize("command", ["", "   ", 'npx "unbalanced'])
def test_unusable_commands_are_refused_up_front(command: str) -> None:
    with pytest.raises(ValueError):
        SharedStdioServer("bad", command)
