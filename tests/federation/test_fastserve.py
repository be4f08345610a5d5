"""`FastServe` answers a plain modern-era tool call exactly as the SDK path does, and hands it everything else.

Each call is sent twice as raw HTTP with the same trace: once plain (the
fast path) and once with a progress token in `_meta` (which only the SDK
path serves; echo reports no progress, so the answer is the same). The two
answers must be the same bytes' worth of JSON (result, error text, the
callee's receipt, whose Ed25519 signature is deterministic) with the same
status and content type, and the ledger must hold the same row for each. A
spy on the SDK's session manager proves which path served: without it this
test would pass with the fast path switched off.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY

from federation.const import TRACE_META_KEY
from federation.node import Node
from federation.toolhost import HostedServer
from servers.echo import build_server as echo_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
UNSTABLE_ROW_FIELDS = {"id", "started", "ms", "seq", "previous_hash", "event_hash", "signature", "event"}
"""What differs between two rows of the same call: when it ran, how long, its place in the hash chain."""


@dataclass
class World:
    node: Node
    http: httpx2.AsyncClient
    sdk_requests: list[str]
    """The `mcp-name` of every request that reached the SDK's session manager."""
    cancelled: set[str]


@pytest.fixture
async def world(start_node: Callable[..., AbstractAsyncContextManager[Node]], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    cancelled: set[str] = set()
    probe = MCPServer("probe")

    @probe.tool()
    async def sleepy(tag: str) -> str:
        """Wait until cancelled (noted under `tag`)."""
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            cancelled.add(tag)
            raise
        return tag

    async with start_node(name="alice") as node, httpx2.AsyncClient(timeout=30) as http:
        await node.tools.add_provider(HostedServer(echo_server()))
        await node.tools.add_provider(HostedServer(probe))
        manager = node.tools.server.session_manager
        sdk_requests: list[str] = []
        handle = manager.asgi_app

        async def spied(scope: Any, receive: Any, send: Any) -> None:
            sdk_requests.append(dict(scope["headers"]).get(b"mcp-name", b"").decode())
            await handle(scope, receive, send)

        monkeypatch.setattr(manager, "asgi_app", spied)
        yield World(node, http, sdk_requests, cancelled)


def _request(tool: str, arguments: Any, trace_id: str, **meta: Any) -> dict[str, Any]:
    envelope = {PROTOCOL_VERSION_META_KEY: MODERN, CLIENT_CAPABILITIES_META_KEY: {}}
    trace = {TRACE_META_KEY: {"trace_id": trace_id, "span_id": f"span-{trace_id}", "deadline_s": 30.0}}
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": arguments, "_meta": envelope | trace | meta}}


async def _post(world: World, request: dict[str, Any], name: str) -> httpx2.Response:
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": name,
    }
    return await world.http.post(world.node.mcp_url, content=json.dumps(request), headers=headers)


async def _rows(world: World, trace_id: str) -> list[dict[str, Any]]:
    await world.node.store.flush()
    rows = await anyio.to_thread.run_sync(world.node.store.rows)
    return [{k: v for k, v in row.items() if k not in UNSTABLE_ROW_FIELDS} for row in rows if row["trace_id"] == trace_id]


CALLS = {
    "ok": ("echo", {"text": "x"}),
    "bad argument": ("echo", {"text": 3}),
    "missing argument": ("echo", {}),
    "unknown tool": ("nope", {"text": "x"}),
}


@pytest.mark.parametrize("case", CALLS)
async def test_fast_path_answers_what_the_sdk_path_answers(world: World, case: str) -> None:
    tool, arguments = CALLS[case]
    trace_id = f"parity-{case.replace(' ', '-')}"
    fast = await _post(world, _request(tool, arguments, trace_id), tool)
    assert world.sdk_requests == [], "the plain call took the fast path"
    sdk = await _post(world, _request(tool, arguments, trace_id, progressToken="p1"), tool)
    assert world.sdk_requests == [tool], "the call with a progress token took the SDK path"

    assert (fast.status_code, fast.headers["content-type"]) == (sdk.status_code, sdk.headers["content-type"]) == (200, "application/json")
    assert fast.json() == sdk.json()
    result = fast.json()["result"]
    assert result["isError"] is (case != "ok")
    assert result["_meta"]["mcpfed/receipt"]["span_id"] == f"span-{trace_id}", "the callee's receipt, for this call"
    fast_row, sdk_row = await _rows(world, trace_id)
    assert fast_row == sdk_row
    assert fast_row["role"] == "served" and fast_row["tool"] == tool


@pytest.mark.parametrize(
    "change",
    [
        {"params": "x"},
        {"params": {"name": "echo", "arguments": [1, 2]}},
        {"params": {"name": "echo", "arguments": {"text": "x"}, "_meta": "s"}},
        {"params": {"name": "echo", "arguments": {"text": "x"}}},  # no envelope in _meta
        {"id": None},
        {"jsonrpc": "1.0"},
    ],
)
async def test_what_the_fast_path_cannot_answer_alike_goes_to_the_sdk(world: World, change: dict[str, Any]) -> None:
    request = _request("echo", {"text": "x"}, "malformed") | change
    response = await _post(world, request, "echo")
    assert world.sdk_requests == ["echo"]
    assert 400 <= response.status_code < 500 or "error" in response.json()


async def test_a_caller_who_hangs_up_cancels_the_call_on_the_fast_path(world: World) -> None:
    async with Client(world.node.mcp_url) as client:
        with pytest.raises(MCPError, match="timed out"):
            await client.call_tool("sleepy", {"tag": "hung-up"}, read_timeout_seconds=0.5)
    await wait_until(lambda: "hung-up" in world.cancelled, "the tool saw the call cancelled", 10)
    assert "sleepy" not in world.sdk_requests
