"""Malformed JSON-RPC at a peer's `/mcp`, on both routes a tool call can take.

A `<peer>__<tool>` request in the 2026-07-28 era (headers name the method and
tool) is forwarded at the message level; anything else goes through the SDK.
Whatever arrives, the answer is a JSON-RPC error or a 4xx — never a 500 and
never a traceback in the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.node import Node
from federation.toolhost import HostedServer
from servers.echo import build_server as echo_server
from tests.support.mesh import introduce
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

REMOTE_TOOL = "srv__echo"
_MODERN = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": REMOTE_TOOL}
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
_ACCEPT = {"content-type": "application/json", "accept": "application/json, text/event-stream"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
deep_array: st.SearchStrategy[Any] = st.integers(1, 400).map(lambda depth: json.loads("[" * depth + "]" * depth))
params = st.one_of(
    json_values,
    deep_array,
    st.fixed_dictionaries({"name": st.sampled_from([REMOTE_TOOL, "echo", "srv__missing", ""]), "arguments": json_values}),
    st.fixed_dictionaries({"name": st.just(REMOTE_TOOL), "arguments": st.just({"text": "x"}), "_meta": json_values}),
    st.fixed_dictionaries({"name": st.just(REMOTE_TOOL), "arguments": json_values, "_meta": st.just(ENVELOPE)}),
    st.fixed_dictionaries({"name": st.just(REMOTE_TOOL), "arguments": st.just({"text": "x"}), "_meta": st.dictionaries(st.sampled_from(["mcpfed/trace", *ENVELOPE]), json_values).map(lambda m: {**ENVELOPE, **m})}),
)
bodies = st.one_of(
    st.builds(lambda p, i: {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": p}, params, json_values),
    json_values.map(lambda v: v),
    st.binary(max_size=64),
)


@pytest.fixture
async def front(start_node: Callable[..., Any]) -> AsyncIterator[Node]:
    """`front` knows `srv`, which hosts the echo tool: `srv__echo` is a remote tool on front."""
    async with start_node(name="srv") as srv, start_node(name="front") as front_node:
        await srv.tools.add_provider(HostedServer(echo_server()))
        await introduce(front_node, srv)
        await wait_until(lambda: REMOTE_TOOL in {t.name for t in front_node.tools.tools})
        yield front_node


def _encode(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, modern=st.booleans())
async def test_malformed_requests_get_a_json_rpc_error_or_4xx_on_both_paths(front: Node, body: Any, modern: bool, caplog: pytest.LogCaptureFixture) -> None:
    headers = {**_ACCEPT, **(_MODERN if modern else {"mcp-protocol-version": "2025-11-25"})}
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        async with httpx.AsyncClient(timeout=20) as http:
            response = await http.post(front.mcp_url, content=_encode(body), headers=headers)
    assert response.status_code < 500, (response.status_code, response.text[:300])
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    if response.status_code == 200 and response.headers.get("content-type", "").startswith("application/json"):
        answer = response.json()
        assert "error" in answer or "result" in answer


async def test_a_header_that_names_another_tool_than_the_body_is_refused_not_forwarded(front: Node) -> None:
    """The fast path used to run the tool the `mcp-name` header named, whatever `params.name` said."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "srv__other", "arguments": {"text": "x"}, "_meta": ENVELOPE}}
    async with httpx.AsyncClient(timeout=20) as http:
        response = await http.post(front.mcp_url, content=_encode(body), headers={**_ACCEPT, **_MODERN})
    assert response.status_code == 400
    assert "does not match" in response.json()["error"]["message"]
