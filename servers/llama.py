"""A llama.cpp model as an MCP server: `generate`, `chat`, `embed`, `model_info`; prompts `summarize` and `ask`.

Standalone: `python -m servers.llama --model PATH --port 8811` serves it over
Streamable HTTP at /mcp (`--stdio` for stdio). A call that arrives while the
model is still loading waits for it, up to `--load-wait` seconds. A federation
peer hosts the same server next to its mesh tools. Generated text streams to the caller as MCP progress
notifications (one per piece of text, the text in `message`), and the final
result carries the whole text and its usage.

Every model call queues for the one worker (`servers.fair_queue`): turns go
round-robin between callers, and a call beyond the queue's limit (or its
caller's share of it) gets the tool error "busy: N calls are waiting for this
model; retry after ~S s". Who the caller is, the host decides (`caller_of`);
on its own the server tells callers apart by what the transport shows: the
MCP session (the `Mcp-Session-Id` of a handshake-era HTTP client), else the
client's address; over stdio there is one caller.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypedDict

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from servers.embedded_models import DEFAULT_MODEL, EMBEDDED_MODELS, EmbeddedModelError, model_path
from servers.fair_queue import DEFAULT_QUEUE_LIMIT, QueueFull
from servers.gguf_file import GGUFError
from servers.llama_engine import ChatMessage, Completion, LlamaEngine, ModelUnavailable, RequestRejected
from servers.standalone import add_transport_args, serve

__all__ = ["CallerOf", "build_server", "connection_caller", "main"]

CallerOf = Callable[[Context], Hashable]
"""Who is calling, as a key for the model queue's turns and shares."""

_REFUSED = (ModelUnavailable, RequestRejected, QueueFull)

MaxTokens = Annotated[int, Field(description="Most tokens to generate (1 … context size).")]
Temperature = Annotated[float, Field(ge=0.0, le=5.0, description="Sampling temperature; 0 is greedy.")]
TopP = Annotated[float, Field(gt=0.0, le=1.0, description="Nucleus sampling mass.")]
Stop = Annotated[list[str] | None, Field(description="Strings that end generation when produced.")]
Seed = Annotated[int | None, Field(description="Sampling seed, for repeatable output.")]


class _Sampling(TypedDict):
    """The sampling arguments generate and chat pass on to the engine, typed so they stay in step with it."""

    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str] | None
    seed: int | None


class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_ms: float
    tokens_per_s: float


class GenerateResult(BaseModel):
    text: str
    finish_reason: str = Field(description="stop, length or cancelled")
    model: str
    usage: UsageInfo


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class EmbedResult(BaseModel):
    model: str
    dimensions: int
    vectors: list[list[float]]


class ModelInfo(BaseModel):
    name: str
    path: str
    architecture: str
    quantization: str
    size_bytes: int
    sha256: str
    n_ctx: int
    trained_context: int | None
    n_threads: int
    n_gpu_layers: int
    gpu_offload_supported: bool
    chat_template: str
    state: str
    error: str | None
    in_flight: int
    queued: int
    requests_served: int
    placement: list[dict[str, Any]] | None = Field(default=None, description="A split model's layers: local, then each lender's endpoint, layers and bytes")


_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def connection_caller(ctx: Context) -> Hashable:
    """The caller as the transport shows it: its MCP session, else its address (see the module docstring).

    A 2026-era HTTP request carries no session, so such callers are told apart
    only by address. Without HTTP (stdio, in-process) there is one client.
    """
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    if headers is None:
        return "stdio"
    if session := headers.get("mcp-session-id"):
        return f"session {session}"
    client = getattr(request, "client", None)
    return f"address {client.host if client else '?'}"


def build_server(engine: LlamaEngine, *, name: str = "llama", lifespan: Any = None, caller_of: CallerOf = connection_caller) -> MCPServer:
    """An MCP server over `engine`; whoever runs it owns the engine's lifetime and says who each caller is (`caller_of`)."""
    server: MCPServer = MCPServer(
        name,
        version="0.1.0",
        instructions=f"Local llama.cpp model {engine.info.name}. Use generate for raw completion, chat for turns.",
        lifespan=lifespan,
        log_level="WARNING",
    )

    async def run(ctx: Context, call: Any) -> GenerateResult:
        pieces = 0

        async def stream(text: str) -> None:
            nonlocal pieces
            pieces += 1
            await ctx.report_progress(pieces, None, text)

        try:
            done: Completion = await call(stream, caller_of(ctx))
        except _REFUSED as exc:
            raise ToolError(str(exc)) from exc
        return GenerateResult(text=done.text, finish_reason=done.finish_reason, model=engine.info.name, usage=UsageInfo(**done.usage.__dict__))

    @server.tool(annotations=_READ_ONLY)
    async def generate(
        prompt: Annotated[str, Field(description="Text to continue.")],
        ctx: Context,
        max_tokens: MaxTokens = 256,
        temperature: Temperature = 0.8,
        top_p: TopP = 0.95,
        stop: Stop = None,
        seed: Seed = None,
    ) -> GenerateResult:
        """Continue `prompt` with the local model. Text streams as progress notifications (text in `message`)."""
        options: _Sampling = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "stop": stop, "seed": seed}
        return await run(ctx, lambda on_token, caller: engine.complete(prompt, on_token=on_token, caller=caller, **options))

    @server.tool(annotations=_READ_ONLY)
    async def chat(
        messages: Annotated[list[Message], Field(description="The conversation so far, oldest first.")],
        ctx: Context,
        max_tokens: MaxTokens = 256,
        temperature: Temperature = 0.8,
        top_p: TopP = 0.95,
        stop: Stop = None,
        seed: Seed = None,
    ) -> GenerateResult:
        """Answer the last message of a conversation, using the model's chat template. Streams like generate."""
        turns = [ChatMessage(m.role, m.content) for m in messages]
        options: _Sampling = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "stop": stop, "seed": seed}
        return await run(ctx, lambda on_token, caller: engine.chat(turns, on_token=on_token, caller=caller, **options))

    @server.tool(annotations=_READ_ONLY)
    async def embed(texts: Annotated[list[str], Field(description="Texts to embed.")], ctx: Context) -> EmbedResult:
        """Embed texts as unit-length vectors (mean-pooled over tokens)."""
        try:
            vectors = await engine.embed(texts, caller=caller_of(ctx))
        except _REFUSED as exc:
            raise ToolError(str(exc)) from exc
        return EmbedResult(model=engine.info.name, dimensions=len(vectors[0]), vectors=vectors)

    @server.tool(annotations=_READ_ONLY)
    def model_info() -> ModelInfo:
        """What model this server runs, how (context, threads, GPU layers) and how busy it is."""
        return ModelInfo(
            **engine.describe(), in_flight=engine.in_flight, queued=engine.queued, requests_served=engine.requests_served
        )

    _add_prompts(server)
    return server


def _add_prompts(server: MCPServer) -> None:
    """Two ready-made turns a client can offer its user (`prompts/list`), to send to `chat`."""

    @server.prompt(title="Summarize")
    def summarize(text: str, words: str = "50") -> str:
        """Summarize a text in a few words."""
        return f"Summarize the following text in at most {words} words. Keep names and numbers.\n\n{text}"

    @server.prompt(title="Ask")
    def ask(question: str) -> str:
        """Ask the model one question, answered briefly and plainly."""
        return f"Answer briefly and plainly. If you do not know, say so.\n\nQuestion: {question}"


def build_standalone(engine: LlamaEngine) -> MCPServer:
    """The server with the engine's lifetime tied to the server's lifespan."""

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[dict[str, Any]]:
        async with engine:
            yield {}

    return build_server(engine, lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m servers.llama", description=__doc__.splitlines()[0])
    names = ", ".join(EMBEDDED_MODELS)
    parser.add_argument("--model", default="default", help=f"path to a .gguf file, an embedded model ({names}), or 'default' ({DEFAULT_MODEL})")
    parser.add_argument("--ctx", type=int, default=4096, help="context window in tokens")
    parser.add_argument("--gpu-layers", type=int, default=None, help="layers to offload (default: all if a GPU build)")
    parser.add_argument(
        "--load-wait",
        type=float,
        default=30.0,
        help="seconds a call that arrives while the model loads waits for it before 'still loading' (default: 30)",
    )
    parser.add_argument("--queue-limit", type=int, default=DEFAULT_QUEUE_LIMIT, help=f"calls that may wait for the model; more are refused as busy (default: {DEFAULT_QUEUE_LIMIT})")
    parser.add_argument("--queue-per-caller", type=int, default=None, help="calls one caller may have waiting (default: half the queue limit)")
    add_transport_args(parser, port=8811)
    args = parser.parse_args(argv)
    try:
        engine = LlamaEngine(
            model_path(args.model),
            n_ctx=args.ctx,
            n_gpu_layers=args.gpu_layers,
            load_wait=args.load_wait,
            queue_limit=args.queue_limit,
            queue_per_caller=args.queue_per_caller,
        )
    except (GGUFError, EmbeddedModelError, ValueError) as exc:
        parser.exit(1, f"error: {exc}\n")
    serve(build_standalone(engine), args)


if __name__ == "__main__":
    main()
