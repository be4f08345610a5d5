"""A model peer end to end: real model, real uvicorn on loopback, the SDK's Streamable HTTP client.

One peer serves the whole module (a model load per test would dominate the
suite); every test leaves it idle, and every bad-input test ends by showing
that the peer still serves a normal request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from federation.card import verify_card
from federation.client import call_tool, connect
from federation.const import TRACE_META_KEY
from federation.errors import ModelFileError, PortInUseError, ToolCallError
from federation.node import Node
from federation.settings import PeerSettings
from federation.store import CallRecord
from servers.embedded_models import model_path
from servers.gguf_file import sha256_of
from tests.support.models import BASE_MODEL, bad_model
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

N_CTX = 512
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    home = tmp_path_factory.mktemp("peer")
    async with Node(PeerSettings(name="model", port=0, home=home, model=BASE_MODEL, n_ctx=N_CTX, max_request_bytes=MAX_BODY)) as peer:
        await peer.wait_ready()
        yield peer


@pytest.fixture
async def http(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
        yield client


class Progress(list[tuple[float, float | None, str | None]]):
    """Every progress notification of a call, as the SDK hands them over."""

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.append((progress, total, message))


async def still_serves(node: Node) -> None:
    """The peer answers a normal generate after whatever the test did to it."""
    async with connect(node.mcp_url) as client:
        result = await call_tool(client, "generate", {"prompt": "Hello", "max_tokens": 2})
    assert result.structured_content is not None
    assert result.structured_content["usage"]["completion_tokens"] == 2
    assert (node.engine.in_flight, node.engine.queued) == (0, 0)  # type: ignore[union-attr]


def assert_usage_consistent(content: dict[str, Any], max_tokens: int) -> None:
    """`length` means exactly max_tokens were made; `stop` means fewer."""
    made = content["usage"]["completion_tokens"]
    assert made == max_tokens if content["finish_reason"] == "length" else 0 <= made < max_tokens, content


def error_text(result: Any) -> str:
    assert result.is_error, f"expected a tool error, got {result.structured_content}"
    return "".join(part.text for part in result.content)


# -- the model's tools through the peer -----------------------------------------


async def test_peer_offers_the_model_tools(node: Node) -> None:
    async with Client(node.mcp_url) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert {"generate", "chat", "embed", "model_info"} <= set(tools)
    assert tools["generate"].input_schema["required"] == ["prompt"]
    assert "usage" in tools["generate"].output_schema["properties"]  # type: ignore[index]


async def test_generate_streams_progress_in_order_that_joins_to_the_text(node: Node) -> None:
    progress = Progress()
    async with Client(node.mcp_url) as client:
        result = await client.call_tool("generate", {"prompt": "Once upon a time", "max_tokens": 12, "seed": 7}, progress_callback=progress)
    content = result.structured_content
    assert content is not None and not result.is_error
    assert [p for p, _, _ in progress] == list(range(1, len(progress) + 1))
    assert "".join(message or "" for _, _, message in progress) == content["text"]
    assert content["finish_reason"] == "length"
    assert content["usage"]["completion_tokens"] == 12
    assert content["usage"]["prompt_tokens"] == 5
    assert content["model"] == node.engine.info.name  # type: ignore[union-attr]


async def test_the_client_helper_streams_text_that_joins_to_the_final_text(node: Node) -> None:
    pieces: list[str] = []

    async def collect(text: str) -> None:
        pieces.append(text)

    async with connect(node.mcp_url) as client:
        result = await call_tool(client, "generate", {"prompt": "Once upon a time", "max_tokens": 12, "seed": 1}, on_text=collect)
    content = result.structured_content
    assert content is not None
    assert content["usage"]["completion_tokens"] == 12
    assert "".join(pieces) == content["text"]


async def test_chat_streams_the_model_turn(node: Node) -> None:
    progress = Progress()
    async with Client(node.mcp_url) as client:
        result = await client.call_tool(
            "chat", {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8, "seed": 1}, progress_callback=progress
        )
    content = result.structured_content
    assert content is not None and not result.is_error
    assert "".join(message or "" for _, _, message in progress) == content["text"]
    assert_usage_consistent(content, 8)


async def test_embed_returns_one_unit_vector_per_text(node: Node) -> None:
    async with Client(node.mcp_url) as client:
        result = await client.call_tool("embed", {"texts": ["red", "green"]})
    content = result.structured_content
    assert content is not None and not result.is_error
    assert len(content["vectors"]) == 2
    assert all(len(v) == content["dimensions"] for v in content["vectors"])
    assert abs(sum(x * x for x in content["vectors"][0]) - 1) < 1e-3


async def test_model_info_names_the_model_and_its_load(node: Node) -> None:
    async with Client(node.mcp_url) as client:
        info = (await client.call_tool("model_info", {})).structured_content
    assert info is not None
    assert info["quantization"] == "Q4_K_M"
    assert info["sha256"] == await anyio.to_thread.run_sync(lambda: sha256_of(model_path(BASE_MODEL)))
    assert info["n_ctx"] == N_CTX
    assert info["state"] == "ready"
    assert (info["in_flight"], info["queued"]) == (0, 0)


# -- load, concurrency, cancellation --------------------------------------------


async def test_four_concurrent_calls_all_complete_and_the_load_shows_while_busy(node: Node, http: httpx.AsyncClient) -> None:
    results: dict[int, Any] = {}
    busiest: dict[str, int] = {"in_flight": 0, "queued": 0}

    async def ask(client: Client, index: int) -> None:
        results[index] = await client.call_tool("generate", {"prompt": f"Story {index}:", "max_tokens": 24, "seed": index})

    async with Client(node.mcp_url) as client, Client(node.mcp_url) as watcher:
        async with anyio.create_task_group() as group:
            for index in range(4):
                group.start_soon(ask, client, index)
            with anyio.fail_after(30):
                while busiest["queued"] < 3:
                    health = (await http.get("/health")).json()
                    busiest = {key: max(busiest[key], health[key]) for key in busiest}
                    await anyio.sleep(0.01)
            info = (await watcher.call_tool("model_info", {})).structured_content
            assert info is not None and info["in_flight"] == 1 and info["queued"] >= 1, "model_info answers while the model is busy"
    assert busiest == {"in_flight": 1, "queued": 3}, "one worker; the rest wait their turn"
    assert sorted(results) == [0, 1, 2, 3]
    for result in results.values():
        assert not result.is_error
        assert_usage_consistent(result.structured_content, 24)
    await still_serves(node)


@pytest.mark.parametrize("mode", ["auto", "legacy"], ids=["modern-era", "handshake-era"])
async def test_client_cancel_stops_the_generation_and_frees_the_worker(node: Node, mode: str) -> None:
    progress = Progress()
    async with Client(node.mcp_url, mode=mode) as client:  # type: ignore[arg-type]
        with anyio.move_on_after(30) as scope:

            async def cancel_once_streaming(value: float, total: float | None, message: str | None) -> None:
                await progress(value, total, message)
                if len(progress) == 3:
                    scope.cancel()

            await client.call_tool(
                "generate",
                {"prompt": "A very long story:", "max_tokens": N_CTX - 16},
                progress_callback=cancel_once_streaming,
                meta={TRACE_META_KEY: {"trace_id": f"cancel-{mode}"}},
            )
        assert len(progress) >= 3, "cancelled mid-stream, not before or after"
        await wait_until(lambda: node.engine.in_flight == 0)  # type: ignore[union-attr]
        result = await client.call_tool("generate", {"prompt": "Hi", "max_tokens": 3})
        assert result.structured_content["usage"]["completion_tokens"] == 3  # type: ignore[index]
    cancelled = await wait_for_ledger(node, lambda row: row.trace_id == f"cancel-{mode}")
    assert (cancelled.tool, cancelled.outcome) == ("generate", "cancelled")


async def test_cancelled_queued_request_is_dropped_and_never_runs(node: Node) -> None:
    engine = node.engine
    assert engine is not None
    served = engine.requests_served
    long_result: list[Any] = []
    queued_progress = Progress()

    async with Client(node.mcp_url) as first, Client(node.mcp_url) as second:

        async def long_call() -> None:
            long_result.append(await first.call_tool("generate", {"prompt": "A list of birds:", "max_tokens": 48, "seed": 3}))

        async with anyio.create_task_group() as group:
            group.start_soon(long_call)
            await wait_until(lambda: engine.in_flight == 1)
            with anyio.CancelScope() as waiter:

                async def cancel_when_queued() -> None:
                    await wait_until(lambda: engine.queued == 1)
                    waiter.cancel()

                group.start_soon(cancel_when_queued)
                await second.call_tool(
                    "generate", {"prompt": "never", "max_tokens": 8}, progress_callback=queued_progress, meta={TRACE_META_KEY: {"trace_id": "dropped"}}
                )
            await wait_until(lambda: engine.queued == 0)
            assert engine.in_flight == 1, "the running request goes on"
    assert queued_progress == []
    assert long_result[0].structured_content["usage"]["completion_tokens"] == 48
    assert engine.requests_served == served + 1, "only the long request ran"
    dropped = await wait_for_ledger(node, lambda row: row.trace_id == "dropped")
    assert (dropped.outcome, dropped.tokens_out) == ("cancelled", 0)
    await still_serves(node)


# -- card, health, metrics, ledger ----------------------------------------------


async def test_card_at_peer_verifies_and_describes_the_model(node: Node, http: httpx.AsyncClient) -> None:
    response = await http.get("/peer")
    card = verify_card(response.content, expected_id=node.peer_id)
    assert card.name == "model"
    assert card.endpoints == [node.mcp_url]
    assert card.models[0].sha256 == await anyio.to_thread.run_sync(lambda: sha256_of(model_path(BASE_MODEL)))
    assert card.models[0].quantization == "Q4_K_M"
    assert {"generate", "chat", "embed", "model_info"} <= {tool.name for tool in card.tools}


async def test_card_changed_in_transit_by_one_byte_fails(node: Node, http: httpx.AsyncClient) -> None:
    raw = (await http.get("/peer")).text
    tampered = raw.replace('"name":"model"', '"name":"modem"')
    assert tampered != raw
    with pytest.raises(Exception, match="bad signature"):
        verify_card(tampered)


async def test_card_markdown_is_readable(node: Node, http: httpx.AsyncClient) -> None:
    response = await http.get("/peer.md")
    assert response.headers["content-type"].startswith("text/markdown")
    text = response.text
    assert text.startswith(f"# model (`{node.peer_id}`)")
    assert "| Gemma 3 270m | Q4_K_M | 253 MB |" in text
    assert "- `generate`:" in text


async def test_health_says_ready_and_idle(node: Node, http: httpx.AsyncClient) -> None:
    health = (await http.get("/health")).json()
    assert health["ok"] is True
    assert health["id"] == node.peer_id
    assert health["model"] == "ready"
    assert (health["in_flight"], health["queued"]) == (0, 0)


async def test_metrics_count_calls_by_tool_and_outcome(node: Node, http: httpx.AsyncClient) -> None:
    async with Client(node.mcp_url) as client:
        await client.call_tool("model_info", {})
        await client.call_tool("generate", {"prompt": "hi", "max_tokens": 0})
    metrics = (await http.get("/metrics")).text
    assert 'mcpfed_calls_total{outcome="ok",tool="model_info"}' in metrics
    assert 'mcpfed_calls_total{outcome="error",tool="generate"}' in metrics
    assert "mcpfed_in_flight 0.0" in metrics


async def wait_for_ledger(node: Node, matches: Any) -> CallRecord:
    """The newest ledger row that `matches`, once the batching writer has written it."""
    found: list[CallRecord] = []

    def look() -> bool:
        found[:] = [row for row in node.store.calls(limit=20) if matches(row)]
        return bool(found)

    async def written() -> bool:
        await node.store.flush()
        return await anyio.to_thread.run_sync(look)

    await wait_until(written, "the call's row in the ledger")  # a cancelled call is recorded when its handler unwinds, after the client returns
    return found[0]


async def test_served_call_is_written_to_the_ledger(node: Node) -> None:
    async with Client(node.mcp_url) as client:
        result = await client.call_tool("generate", {"prompt": "Ledger test", "max_tokens": 4}, meta={TRACE_META_KEY: {"trace_id": "ledger-1"}})
    usage = result.structured_content["usage"]  # type: ignore[index]
    row = await wait_for_ledger(node, lambda row: row.trace_id == "ledger-1")
    assert (row.tool, row.outcome, row.role) == ("generate", "ok", "served")
    assert (row.tokens_in, row.tokens_out) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert row.tokens_in > 0 and row.tokens_out == 4
    assert row.callee == node.peer_id
    assert (Path(node.home) / "mcpfed.db").exists()


# -- bad input: a clear error, and the peer keeps serving --------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "problem"),
    [
        ("nope", {}, "Unknown tool: 'nope'. This peer offers: chat, embed, generate"),
        ("generate", {"prompt": 5}, "generate: argument 'prompt'=5 is invalid: input should be a valid string."),
        ("generate", {"prompt": "x", "max_tokens": "lots"}, "generate: argument 'max_tokens'='lots' is invalid: input should be a valid integer"),
        ("generate", {}, "generate: missing required argument 'prompt' (string)."),
        ("generate", {"prompt": "x", "temperature": 9}, "generate: argument 'temperature'=9 is invalid: input should be less than or equal to 5."),
        ("chat", {"messages": "hi"}, "chat: argument 'messages'='hi' is invalid: input should be a valid list."),
        ("chat", {"messages": [{"role": "robot", "content": "hi"}]}, "chat: argument 'messages[0].role'='robot' is invalid: input should be 'system', 'user' or 'assistant'."),
        ("embed", {"texts": []}, "texts is empty"),
        ("generate", {"prompt": "x", "max_tokens": 0}, "max_tokens must be at least 1 (got 0)"),
        ("generate", {"prompt": "x", "max_tokens": -3}, "max_tokens must be at least 1 (got -3)"),
        ("generate", {"prompt": "x", "max_tokens": N_CTX + 1}, f"larger than the context window ({N_CTX} tokens)"),
        ("generate", {"prompt": "word " * N_CTX, "max_tokens": 4}, f"but the context window is {N_CTX}; shorten the prompt"),
    ],
    ids=[
        "unknown-tool",
        "prompt-not-a-string",
        "max-tokens-not-a-number",
        "prompt-missing",
        "temperature-out-of-range",
        "messages-not-a-list",
        "unknown-role",
        "nothing-to-embed",
        "max-tokens-zero",
        "max-tokens-negative",
        "max-tokens-over-context",
        "prompt-over-context",
    ],
)
async def test_bad_call_gets_a_tool_error_saying_what_is_wrong(node: Node, tool: str, arguments: dict[str, Any], problem: str) -> None:
    async with Client(node.mcp_url) as client:
        result = await client.call_tool(tool, arguments)
    assert problem in error_text(result)
    await still_serves(node)


MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"jsonrpc": "2.0", "method": ', "Parse error"),
        (b"\xff\xfe not utf-8", "Parse error"),
        (b'{"hello": "world"}', "Validation error"),  # the SDK answers -32602 here, not -32600
        (b"[]", "Validation error"),
    ],
    ids=["cut-json", "not-utf8", "not-json-rpc", "empty-batch"],
)
async def test_malformed_body_gets_a_json_rpc_error_not_a_crash(node: Node, http: httpx.AsyncClient, body: bytes, says: str) -> None:
    response = await http.post("/mcp", content=body, headers=MCP_HEADERS)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] in (-32700, -32600, -32602)
    assert error["message"].startswith(says)
    await still_serves(node)


async def test_oversized_body_is_refused_with_its_size_and_the_limit(node: Node, http: httpx.AsyncClient) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "generate", "arguments": {"prompt": "x" * MAX_BODY}}}
    response = await http.post("/mcp", content=json.dumps(call), headers=MCP_HEADERS)
    assert response.status_code == 413
    assert response.json()["error"]["message"].startswith(f"request body is {len(json.dumps(call))} bytes, over this peer's limit of {MAX_BODY} bytes")
    await still_serves(node)


async def test_oversized_call_reaches_an_sdk_caller_as_that_message(node: Node) -> None:
    with pytest.raises(ToolCallError, match=f"generate: request body is \\d+ bytes, over this peer's limit of {MAX_BODY} bytes"):
        async with connect(node.mcp_url) as client:
            await call_tool(client, "generate", {"prompt": "x" * MAX_BODY})
    await still_serves(node)


async def test_second_peer_on_a_taken_port_is_refused_and_the_first_keeps_serving(node: Node, tmp_path: Path) -> None:
    with pytest.raises(PortInUseError, match=rf"port {node.port} on 127.0.0.1 is already in use; pick another with --port"):
        async with Node(PeerSettings(name="late", port=node.port, home=tmp_path, model=None)):
            pass
    await still_serves(node)


async def test_request_while_the_model_loads_says_still_loading(tmp_path: Path) -> None:
    # The whole trained context (32k tokens) takes a few seconds to allocate: a real, slow load.
    async with Node(PeerSettings(name="slow", port=0, home=tmp_path, model=BASE_MODEL, n_ctx=32768)) as slow:
        async with Client(slow.mcp_url) as client:
            result = await client.call_tool("generate", {"prompt": "hi", "max_tokens": 2})
            assert "still loading; retry in a moment" in error_text(result)
            info = (await client.call_tool("model_info", {})).structured_content
            assert info is not None and info["state"] == "loading"
            async with httpx.AsyncClient() as http:
                health = (await http.get(slow.url + "/health")).json()
            assert (health["ok"], health["model"]) == (False, "loading")
            await slow.wait_ready()
            result = await client.call_tool("generate", {"prompt": "hi", "max_tokens": 2})
            assert result.structured_content["usage"]["completion_tokens"] == 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("missing", "does not exist. Pass --model PATH to a .gguf file, or --model default"),
        ("not-gguf", "is not a GGUF model"),
        ("truncated", "truncated"),
        ("directory", "is a directory. Pass --model the path of a .gguf file inside it"),
    ],
)
def test_unusable_model_file_is_refused_before_anything_starts(tmp_path: Path, kind: str, problem: str) -> None:
    with pytest.raises(ModelFileError, match=problem):
        Node(PeerSettings(name="bad", port=0, home=tmp_path / "home", model=str(bad_model(kind, tmp_path))))


async def test_model_llama_cpp_cannot_load_is_reported_and_the_peer_stays_up(tmp_path: Path, unloadable_model: Path) -> None:
    async with Node(PeerSettings(name="broken", port=0, home=tmp_path / "home", model=str(unloadable_model))) as broken:
        with pytest.raises(ModelFileError, match="could not load model"):
            await broken.wait_ready()
        async with httpx.AsyncClient() as http:
            health = (await http.get(broken.url + "/health")).json()
        assert (health["ok"], health["model"]) == (False, "failed")
        assert "could not load model" in health["error"]
        async with Client(broken.mcp_url) as client:
            result = await client.call_tool("generate", {"prompt": "hi", "max_tokens": 2})
        assert "could not load model" in error_text(result)
