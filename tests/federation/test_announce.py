"""A handshake-era client hears each change of a list once, however often it listed, and is forgotten when it goes."""

from __future__ import annotations

import gc
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import Client

from federation.toolhost import HostedServer
from servers.echo import build_server as echo_server

pytestmark = pytest.mark.anyio


async def test_a_legacy_client_that_listed_five_times_hears_one_change_once(start_node: Any) -> None:
    notices: list[Any] = []

    async def on_message(message: Any) -> None:
        if isinstance(getattr(message, "root", message), types.ToolListChangedNotification):
            notices.append(message)

    async with start_node(name="host") as host:
        async with Client(host.tools.server, mode="legacy", message_handler=on_message) as client:
            for _ in range(5):  # each request reaches the server in a new session wrapper
                await client.list_tools()
            await host.tools.add_provider(HostedServer(echo_server()))
            with anyio.fail_after(5):
                while "echo" not in {t.name for t in (await client.list_tools()).tools}:
                    await anyio.sleep(0.02)
            await client.list_tools()  # one more round trip: every notice sent before it has arrived
        assert len(notices) == 1, f"{len(notices)} notifications of one change"
        gc.collect()
        assert not list(host.tools.changes._legacy_connections), "a client that left is still told of changes"
