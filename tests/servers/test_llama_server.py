"""The model's MCP server on its own (no federation): its tools' contract over real Streamable HTTP, and over stdio."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from servers.llama import build_standalone
from servers.llama_engine import LlamaEngine, default_model_path
from tests.support.models import BASE_MODEL

pytestmark = pytest.mark.anyio

N_CTX = 256  # small, so a prompt can overflow it cheaply


@pytest.fixture(scope="module")
async def url() -> AsyncIterator[str]:
    """The standalone server (`python -m servers.llama`) under uvicorn on a free loopback port."""
    engine = LlamaEngine(default_model_path(), n_ctx=N_CTX)
    app = build_standalone(engine).streamable_http_app()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve, [sock])
        with anyio.fail_after(30):
            while not server.started:
                await anyio.sleep(0.01)
            await engine.wait_ready()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
        server.should_exit = True


class Progress(list[tuple[float, float | None, str | None]]):
    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.append((progress, total, message))


async def call(url: str, tool: str, arguments: dict[str, Any], progress: Progress | None = None) -> Any:
    async with Client(url) as client:
        return await client.call_tool(tool, arguments, progress_callback=progress)


async def test_tools_declare_their_arguments_and_results(url: str) -> None:
    async with Client(url) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {"generate", "chat", "embed", "model_info"}
    generate = tools["generate"]
    assert set(generate.input_schema["properties"]) == {"prompt", "max_tokens", "temperature", "top_p", "stop", "seed"}
    assert generate.input_schema["required"] == ["prompt"]
    assert generate.input_schema["properties"]["temperature"]["maximum"] == 5.0
    assert generate.output_schema is not None
    assert {"text", "finish_reason", "model", "usage"} <= set(generate.output_schema["properties"])
    assert all(tool.annotations is not None and tool.annotations.read_only_hint for tool in tools.values())
    assert tools["chat"].input_schema["required"] == ["messages"]
    assert tools["embed"].input_schema["required"] == ["texts"]


async def test_generate_streams_each_piece_as_progress_then_returns_text_and_usage(url: str) -> None:
    progress = Progress()
    result = await call(url, "generate", {"prompt": "The sky is", "max_tokens": 10, "seed": 4}, progress)
    content = result.structured_content
    assert not result.is_error
    assert [value for value, _, _ in progress] == list(range(1, len(progress) + 1)), "in order, numbered from 1"
    assert all(total is None for _, total, _ in progress), "the length is not known in advance"
    assert "".join(message or "" for _, _, message in progress) == content["text"]
    assert content["finish_reason"] == "length"
    usage = content["usage"]
    assert usage["completion_tokens"] == 10
    assert usage["prompt_tokens"] == 3  # the default SmolLM2 adds no <bos>: "The", " sky", " is"
    assert usage["total_ms"] > 0 and usage["tokens_per_s"] > 0
    assert [part.text for part in result.content] != [], "a text copy for clients that ignore structured content"


async def test_generate_honours_stop_strings(url: str) -> None:
    result = await call(url, "generate", {"prompt": "Count: 1, 2, 3,", "max_tokens": 30, "temperature": 0, "stop": [" 6"]})
    assert result.structured_content["text"] == " 4, 5,"
    assert result.structured_content["finish_reason"] == "stop"


async def test_chat_answers_the_conversation_and_streams_like_generate(url: str) -> None:
    progress = Progress()
    messages = [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Name a fruit."}]
    result = await call(url, "chat", {"messages": messages, "max_tokens": 6, "seed": 2}, progress)
    content = result.structured_content
    assert not result.is_error
    assert "".join(message or "" for _, _, message in progress) == content["text"]
    assert content["usage"]["completion_tokens"] == 6 or content["finish_reason"] == "stop"


async def test_embed_returns_one_vector_per_text(url: str) -> None:
    result = await call(url, "embed", {"texts": ["one", "two", "three"]})
    content = result.structured_content
    assert len(content["vectors"]) == 3
    assert {len(vector) for vector in content["vectors"]} == {content["dimensions"]}


async def test_model_info_describes_the_model_and_its_load(url: str) -> None:
    info = (await call(url, "model_info", {})).structured_content
    assert (info["architecture"], info["quantization"], info["n_ctx"]) == ("llama", "Q4_1", N_CTX)
    assert info["chat_template"] == "gguf"
    assert (info["state"], info["in_flight"], info["queued"]) == ("ready", 0, 0)
    assert len(info["sha256"]) == 64


@pytest.mark.parametrize(
    ("tool", "arguments", "problem"),
    [
        ("generate", {"prompt": ["not", "text"]}, "Input should be a valid string"),
        ("generate", {"prompt": "x", "top_p": 0}, "Input should be greater than 0"),
        ("generate", {"prompt": "x", "stop": "."}, "Input should be a valid list"),
        ("generate", {"prompt": "x", "max_tokens": 0}, "max_tokens must be at least 1"),
        ("generate", {"prompt": "x", "max_tokens": N_CTX * 2}, f"larger than the context window ({N_CTX} tokens)"),
        ("generate", {"prompt": "many words " * N_CTX}, f"context window is {N_CTX}; shorten the prompt or start the peer with a larger --ctx"),
        ("chat", {"messages": []}, "messages is empty"),
        ("chat", {"messages": [{"role": "user"}]}, "content\n  Field required"),
        ("embed", {"texts": ["long text " * N_CTX]}, f"over the {N_CTX}-token context; split it"),
        ("embed", {"texts": "not a list"}, "Input should be a valid list"),
    ],
)
async def test_bad_arguments_come_back_as_tool_errors_naming_the_problem(url: str, tool: str, arguments: dict[str, Any], problem: str) -> None:
    result = await call(url, tool, arguments)
    assert result.is_error
    assert problem in result.content[0].text
    assert not (await call(url, "generate", {"prompt": "ok", "max_tokens": 1})).is_error, "the server goes on serving"


def stdio_server(*flags: str) -> StdioServerParameters:
    """`python -m servers.llama --stdio` as a client config starts it, on the base Gemma with its whole context.

    Allocating 32k tokens of context takes seconds: the first call surely arrives during the load.
    """
    root = Path(__file__).resolve().parents[2]
    args = ["-m", "servers.llama", "--stdio", "--model", BASE_MODEL, "--ctx", "32768", *flags]
    return StdioServerParameters(command=sys.executable, args=args, env=dict(os.environ), cwd=root)


async def test_the_first_call_over_stdio_waits_for_the_model_to_load(tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w") as errlog:
        async with Client(stdio_client(stdio_server(), errlog=errlog), mode="legacy") as client:
            result = await client.call_tool("generate", {"prompt": "hi", "max_tokens": 2})
            info = (await client.call_tool("model_info", {})).structured_content
    assert not result.is_error, result.content
    assert result.structured_content["usage"]["completion_tokens"] == 2
    assert info["n_ctx"] == 32768


async def test_without_a_load_wait_a_call_during_the_load_says_still_loading(tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w") as errlog:
        async with Client(stdio_client(stdio_server("--load-wait", "0"), errlog=errlog), mode="legacy") as client:
            result = await client.call_tool("generate", {"prompt": "hi", "max_tokens": 2})
    assert result.is_error
    assert "is still loading; retry in a moment" in result.content[0].text  # type: ignore[union-attr]
