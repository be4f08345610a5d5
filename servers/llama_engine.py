"""One llama.cpp model behind one worker thread, with a fair queue.

Why this shape: a llama.cpp context is not thread-safe, so every request for a
model takes its turn in one `FairQueue` (`servers.fair_queue`): bounded, and
round-robin between callers, so one caller's flood neither grows it without
limit nor starves the others; a cancelled waiter simply leaves it. The model
runs in a worker thread and hands each token to the event loop through an
unbounded memory stream, so generation never waits on the network; the caller
streams the tokens on. Cancelling the caller sets a flag the worker checks
before each token, which frees the worker within one token.

Closing the engine stops the generation in progress the same way (its caller
gets "shutting down"), refuses what is queued, and frees the model on a worker
thread once the decode in progress has ended: every llama.cpp call holds one
lock while it runs, and the free takes it too. Freeing a context while another
thread decodes with it kills the process (a stop mid-generation used to end
in a segmentation fault).

The model loads in the background once the engine is entered: a server can
answer (with "still loading", or after waiting up to `load_wait` seconds for
the load) while a large file is read.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import math
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from servers.embedded_models import model_path
from servers.fair_queue import DEFAULT_QUEUE_LIMIT, FairQueue
from servers.ggml_rpc import local_gpu_present
from servers.gguf_file import GGUFInfo, read_gguf_info, sha256_of
from servers.token_text import TokenText

if TYPE_CHECKING:
    from llama_cpp.llama_types import ChatCompletionRequestMessage

__all__ = [
    "ChatMessage",
    "Completion",
    "EngineState",
    "LlamaEngine",
    "ModelUnavailable",
    "RequestRejected",
    "Usage",
    "default_model_path",
    "default_threads",
]

TokenCallback = Callable[[str], Awaitable[None]]

_GEMMA_STOP = "<end_of_turn>"
REPEAT_PENALTY = 1.1
"""Mild penalty on repeated tokens: the small embedded models otherwise loop at low temperatures.

Measured on SmolLM2 135M, "What is the capital of France?", 4 seeds, 200 tokens: at temperature 0
penalty 1.0 never ended its turn (4 of 4 ran to the limit, repeating a phrase), 1.1 ended every time
(29 tokens); at 0.8 both ended 4 of 4. llama.cpp's own CLI default is 1.0, its server's was 1.1.
"""
_SHUTTING_DOWN = "the model server is shutting down; send the request to another server."




class ModelUnavailable(RuntimeError):
    """The model is still loading or failed to load; the message says which."""


class RequestRejected(ValueError):
    """The request cannot be served as asked (bad limits, prompt too long)."""


class EngineState(str, enum.Enum):  # noqa: UP042 - StrEnum would change str() and format() of the members
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_ms: float
    tokens_per_s: float


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    usage: Usage

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_model_path() -> Path:
    """The default embedded model's file (servers.embedded_models says which and why; no network)."""
    return model_path("default")


def default_threads() -> int:
    """All cores this process may use: llama-cpp-python's default (half) is 40% slower on 2 cores."""
    return max(1, len(os.sched_getaffinity(0)))


def gpu_offload_supported() -> bool:
    """Whether a local GPU is there: not `llama_supports_gpu_offload()`, which an RPC build also turns True."""
    return local_gpu_present()


class LlamaEngine:
    """A loaded GGUF model with one worker; `async with` loads it, exit frees it.

    ```python
    async with LlamaEngine(path) as engine:
        await engine.wait_ready()
        done = await engine.complete("Hello", max_tokens=16, on_token=print_async)
    ```
    """

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int = 4096,
        n_gpu_layers: int | None = None,
        n_threads: int | None = None,
        load_wait: float = 0.0,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        queue_per_caller: int | None = None,
        repack: bool = True,
    ) -> None:
        self.info: GGUFInfo = read_gguf_info(path)  # refuses a bad file before anything starts
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self._gpu_layers_requested = n_gpu_layers
        self.n_gpu_layers = 0
        self.state = EngineState.LOADING
        self.error: str | None = None
        self._llama: Any = None
        self._embedder: Any = None
        self._context_lock = threading.Lock()  # held by every llama.cpp call, and by the free
        self._closing = threading.Event()  # set on close: the generation in progress stops at its next token
        self._sha256: str | None = None
        self._queue = FairQueue(queue_limit, queue_per_caller)  # ValueError for a bad limit, before anything starts
        self.repack = repack
        """Let the CPU backend repack weights for its faster kernels (llama.cpp's default). It changes greedy
        output slightly, and a lender cannot repack, so a split model matches only an unsplit one loaded without."""
        self._ready = anyio.Event()
        self._hashed = anyio.Event()
        self._task_group: TaskGroup | None = None
        self.requests_served = 0
        self.load_wait = load_wait
        """Seconds a request that arrives while the model loads waits for it before "still loading" (0: answer at once)."""

    # -- lifecycle -------------------------------------------------------
    async def __aenter__(self) -> LlamaEngine:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._hash)
        self._task_group.start_soon(self._load)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Refuse new requests, end the one in progress at its next token, then free the model (see the module docstring)."""
        self.state = EngineState.CLOSED
        self._closing.set()
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(exc_type, exc, tb)  # waits for a load in progress: llama.cpp cannot abort one
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._free)

    def _free(self) -> None:
        """Close the model's contexts (on a worker thread), after the llama.cpp call in progress, if any, has returned."""
        with self._context_lock:
            for model in (self._llama, self._embedder):
                if model is not None:
                    model.close()
            self._llama = self._embedder = None

    async def _load(self) -> None:
        try:
            self._llama = await anyio.to_thread.run_sync(self._load_sync, False)
            await self._hashed.wait()  # "ready" promises that the card can name the file's sha256
            if not self._closing.is_set():
                self.state = EngineState.READY
        except Exception as exc:  # noqa: BLE001 - any llama.cpp failure is reported to callers
            self.error = f"could not load model {self.info.path}: {exc}. The file may be corrupt; download it again."
            self.state = EngineState.FAILED
        finally:
            self._ready.set()

    async def _hash(self) -> None:
        """Hash the file in a thread while it loads: hashing gigabytes on the event loop would freeze the peer."""
        try:
            self._sha256 = await anyio.to_thread.run_sync(functools.partial(sha256_of, self.info.path, stop=self._closing))
        except OSError:  # the load reports an unreadable file (or the engine closed); the card just names no hash
            pass
        finally:
            self._hashed.set()

    def _load_sync(self, embedding: bool) -> Any:
        import llama_cpp

        _silence_llama_log()
        if self._gpu_layers_requested is None:
            self.n_gpu_layers = -1 if gpu_offload_supported() else 0
        else:
            self.n_gpu_layers = self._gpu_layers_requested
        # verbose=True at construction: with verbose=False llama-cpp-python points
        # fds 1 and 2 at /dev/null while it loads, which swallows everything the
        # process prints meanwhile (a spinner, logs) and, with two models loading in
        # parallel threads, for good. Its chatter is silenced instead (see below).
        with _model_params(self.model_params()):
            llama = llama_cpp.Llama(**(self.llama_settings(embedding=embedding) | {"verbose": True}))
        llama.verbose = False
        return llama

    def model_params(self) -> dict[str, Any]:
        """`llama_model_params` fields this engine sets that `llama_cpp.Llama` takes no argument for."""
        return {} if self.repack else {"use_extra_bufts": False}

    def llama_settings(self, *, embedding: bool = False) -> dict[str, Any]:
        """What this engine passes to `llama_cpp.Llama` (bench/ builds its raw baseline from the same)."""
        return {
            "model_path": str(self.info.path),
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "n_threads_batch": self.n_threads,
            "n_gpu_layers": self.n_gpu_layers,
            "embedding": embedding,
            "verbose": False,
        }

    async def wait_ready(self) -> None:
        """Wait for loading to end; raise `ModelUnavailable` if it failed."""
        await self._ready.wait()
        self._require_ready()

    async def _until_loaded(self) -> None:
        """Let a request that arrives during the load wait up to `load_wait` seconds for it.

        A stdio client starts the server and calls it straight away; failing
        that first call would make every such client's first answer an error.
        """
        if self.state is EngineState.LOADING and self.load_wait > 0:
            with anyio.move_on_after(self.load_wait):
                await self._ready.wait()
        self._require_ready()

    def _require_ready(self) -> None:
        if self.state is EngineState.LOADING:
            waited = f" after {self.load_wait:g} s" if self.load_wait > 0 else ""
            raise ModelUnavailable(f"model {self.info.name} is still loading{waited}; retry in a moment.")
        if self.state is EngineState.FAILED:
            raise ModelUnavailable(self.error or "model failed to load")
        if self.state is EngineState.CLOSED:
            raise ModelUnavailable(_SHUTTING_DOWN)

    # -- load --------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self._queue.in_flight

    @property
    def queued(self) -> int:
        return self._queue.queued

    @property
    def sha256(self) -> str:
        """The file's sha256, hashed in the background once the engine is entered; "" until then."""
        return self._sha256 or ""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.info.name,
            "path": str(self.info.path),
            "architecture": self.info.architecture,
            "quantization": self.info.quantization,
            "size_bytes": self.info.size,
            "sha256": self.sha256,
            "n_ctx": self.n_ctx,
            "trained_context": self.info.context_length,
            "n_threads": self.n_threads,
            "n_gpu_layers": self.n_gpu_layers,
            "gpu_offload_supported": gpu_offload_supported(),
            "chat_template": "gguf" if self.info.chat_template else ("gemma" if self._is_gemma else "plain"),
            "state": self.state.value,
            "error": self.error,
        }

    # -- generation ------------------------------------------------------
    async def complete(
        self,
        prompt: str,
        *,
        max_tokens: int = 256,
        temperature: float = 0.8,
        top_p: float = 0.95,
        repeat_penalty: float = REPEAT_PENALTY,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        on_token: TokenCallback | None = None,
        caller: Hashable = None,
    ) -> Completion:
        """Generate a completion; `on_token` gets the text as it is made (all that accumulated while it was busy).

        `caller` names who asks, for the queue's turns and shares; `QueueFull` if it may not wait.
        """
        await self._until_loaded()
        if max_tokens <= 0:
            raise RequestRejected(f"max_tokens must be at least 1 (got {max_tokens}).")
        if max_tokens > self.n_ctx:
            raise RequestRejected(
                f"max_tokens={max_tokens} is larger than the context window ({self.n_ctx} tokens); "
                "ask for fewer tokens or start the peer with a larger --ctx."
            )
        options = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "repeat_penalty": repeat_penalty,
            "stop": list(stop or []),
            "seed": seed,
        }
        async with self._queue.turn(caller):
            self._require_ready()
            return await self._stream_from_worker(prompt, options, on_token)

    async def _stream_from_worker(self, prompt: str, options: dict[str, Any], on_token: TokenCallback | None) -> Completion:
        cancelled = threading.Event()
        send, receive = anyio.create_memory_object_stream[str](math.inf)
        outcome: list[Completion] = []
        failure: list[Exception] = []

        loop = asyncio.get_running_loop()  # anyio runs on asyncio here (zeroconf needs it)

        def deliver(text: str) -> None:
            try:
                send.send_nowait(text)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):  # the receiver left: stop generating
                cancelled.set()

        def emit(text: str) -> None:
            # Hand the token over without waiting for the event loop: a blocking
            # round trip per token cost ~5 % of tok/s on 2 cores (bench/model.py).
            loop.call_soon_threadsafe(deliver, text)

        async def work() -> None:
            with send:
                try:
                    outcome.append(await anyio.to_thread.run_sync(self._generate_sync, prompt, options, emit, cancelled))
                except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
                    failure.append(exc)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(work)
            try:
                async with receive:
                    async for text in receive:
                        if on_token is not None:
                            await on_token(text + _drain(receive))
            finally:
                cancelled.set()  # stop the worker at its next token if we leave early
        if failure:
            raise failure[0]
        self.requests_served += 1
        return outcome[0]

    def _generate_sync(
        self, prompt: str, options: dict[str, Any], emit: Callable[[str], None], cancelled: threading.Event
    ) -> Completion:
        """Sample token by token with `Llama.generate`, so usage counts tokens, not streamed chunks.

        (`create_completion(stream=True)` yields one chunk per *piece of text*: tokens of one
        multi-byte character come as one chunk, so counting chunks under-reports tokens.)

        Every prompt is evaluated from scratch. llama-cpp-python would reuse the
        previous request's matching prefix, but llama.cpp's logits depend on how a
        prompt is split into batches (Gemma 3: up to 1.0 apart), so the answer to
        the same prompt and seed would depend on who asked what before.
        """
        with self._context_lock:
            if self._llama is None:  # closed while this request waited for the thread
                raise ModelUnavailable(_SHUTTING_DOWN)
            return self._generate_locked(prompt, options, emit, cancelled)

    def _generate_locked(
        self, prompt: str, options: dict[str, Any], emit: Callable[[str], None], cancelled: threading.Event
    ) -> Completion:
        import llama_cpp

        llama = self._llama
        started = time.perf_counter()
        tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        prompt_tokens = len(tokens)
        if prompt_tokens >= self.n_ctx:
            raise RequestRejected(
                f"the prompt is {prompt_tokens} tokens but the context window is {self.n_ctx}; "
                "shorten the prompt or start the peer with a larger --ctx."
            )
        budget = min(options["max_tokens"], self.n_ctx - prompt_tokens)  # the reply must fit the context
        seed = options["seed"]
        llama.set_seed(seed if seed is not None else random.randrange(2**31))
        text = TokenText(options["stop"])
        pieces: list[str] = []

        def send(piece: str) -> None:
            if piece:
                pieces.append(piece)
                emit(piece)

        finish_reason = "length"
        completion_tokens = 0
        vocab = llama._model.vocab  # what llama-cpp-python's own create_completion checks for end-of-generation
        llama.reset()
        for token in llama.generate(tokens, temp=options["temperature"], top_p=options["top_p"], repeat_penalty=options["repeat_penalty"]):
            if self._closing.is_set():  # the engine is closing: end here, the free waits for this thread
                raise ModelUnavailable(_SHUTTING_DOWN)
            if cancelled.is_set():
                finish_reason = "cancelled"
                break
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish_reason = "stop"
                break
            completion_tokens += 1
            send(text.push(llama.detokenize([token])))
            if text.stopped:
                finish_reason = "stop"
                break
            if completion_tokens >= budget:
                break
        send(text.flush())
        elapsed = time.perf_counter() - started
        usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_ms=round(elapsed * 1000, 1),
            tokens_per_s=round(completion_tokens / elapsed, 2) if elapsed > 0 else 0.0,
        )
        return Completion(text="".join(pieces), finish_reason=finish_reason, usage=usage)

    # -- chat ------------------------------------------------------------
    @property
    def _is_gemma(self) -> bool:
        return self.info.architecture.startswith("gemma")

    def format_chat(self, messages: Sequence[ChatMessage]) -> tuple[str, list[str]]:
        """Turn messages into a prompt and its stop strings.

        The GGUF's own template wins; the base Gemma 3 270M has none and
        llama.cpp's fallback makes it answer nothing, so Gemma gets its turn
        template; any other template-less model gets a plain transcript.
        """
        if not messages:
            raise RequestRejected("messages is empty; send at least one {'role': 'user', 'content': ...}.")
        for message in messages:
            if message.role not in ("system", "user", "assistant"):
                raise RequestRejected(f"unknown role {message.role!r}; use system, user or assistant.")
        if self.info.chat_template:
            return self._format_with_gguf_template(messages)
        if self._is_gemma:
            return _format_gemma(messages), [_GEMMA_STOP]
        lines = [f"{m.role.capitalize()}: {m.content}" for m in messages]
        return "\n".join(lines) + "\nAssistant:", ["\nUser:"]

    def _format_with_gguf_template(self, messages: Sequence[ChatMessage]) -> tuple[str, list[str]]:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llama = self._llama
        formatter = Jinja2ChatFormatter(
            template=self.info.chat_template or "",
            eos_token=llama.detokenize([llama.token_eos()], special=True).decode("utf-8", errors="ignore"),
            bos_token=llama.detokenize([llama.token_bos()], special=True).decode("utf-8", errors="ignore"),
        )
        turns = [{"role": m.role, "content": m.content} for m in messages]  # roles already checked by format_chat
        response = formatter(messages=cast("list[ChatCompletionRequestMessage]", turns))
        stop = response.stop if isinstance(response.stop, list) else [response.stop] if response.stop else []
        return response.prompt, stop

    async def chat(self, messages: Sequence[ChatMessage], *, stop: Sequence[str] | None = None, **options: Any) -> Completion:
        await self._until_loaded()
        prompt, template_stop = self.format_chat(messages)
        return await self.complete(prompt, stop=[*template_stop, *(stop or [])], **options)

    # -- embeddings ------------------------------------------------------
    async def embed(self, texts: Sequence[str], *, caller: Hashable = None) -> list[list[float]]:
        """Mean-pooled embeddings, from a second context opened on first use; queued like `complete`."""
        await self._until_loaded()
        if not texts:
            raise RequestRejected("texts is empty; send at least one string to embed.")
        async with self._queue.turn(caller):
            return await anyio.to_thread.run_sync(self._embed_sync, list(texts))

    def _embed_sync(self, texts: list[str]) -> list[list[float]]:
        with self._context_lock:
            if self._llama is None:  # closed while this request waited for the thread
                raise ModelUnavailable(_SHUTTING_DOWN)
            if self._embedder is None:
                self._embedder = self._load_sync(True)
            return self._embed_locked(texts)

    def _embed_locked(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for text in texts:
            tokens = len(self._embedder.tokenize(text.encode("utf-8"), add_bos=True))
            if tokens >= self.n_ctx:
                raise RequestRejected(f"a text is {tokens} tokens, over the {self.n_ctx}-token context; split it.")
            vector = self._embedder.embed(text)  # pooled as the model says, or one vector per token
            if vector and isinstance(vector[0], list):  # a model without pooling (Gemma): mean-pool here
                vector = [math.fsum(column) / len(vector) for column in zip(*vector, strict=True)]
            norm = math.sqrt(math.fsum(x * x for x in vector)) or 1.0  # normalise after pooling, not per token
            vectors.append([float(x) / norm for x in vector])
        return vectors


def _drain(receive: MemoryObjectReceiveStream[str]) -> str:
    """The text that arrived while the previous piece was being handed on, so it goes out in one.

    A caller that reads slower than the model writes (a fast GPU, a slow
    network) then gets fewer, longer pieces instead of falling ever further behind.
    """
    pieces: list[str] = []
    while True:
        try:
            pieces.append(receive.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            return "".join(pieces)


_MODEL_PARAMS_LOCK = threading.Lock()


@contextmanager
def _model_params(fields: dict[str, Any]) -> Iterator[None]:
    """Load with these `llama_model_params` fields set: `Llama` builds its params from
    `llama_model_default_params()`, so that is wrapped for the load. Every load takes the lock,
    so a load in another thread never sees another's fields."""
    import llama_cpp.llama_cpp as low

    with _MODEL_PARAMS_LOCK:
        default = low.llama_model_default_params

        def with_fields() -> Any:
            params = default()
            for name, value in fields.items():
                setattr(params, name, value)
            return params

        low.llama_model_default_params = with_fields
        try:
            yield
        finally:
            low.llama_model_default_params = default


@functools.cache
def _silence_llama_log() -> None:
    """Silence llama.cpp's C log and llama-cpp-python's own prints; load errors still raise.

    The prints (system info, the whole metadata dict) go through the module's
    `print`, so shadowing that one name quiets them without touching stderr.
    """
    import ctypes

    import llama_cpp
    import llama_cpp.llama

    llama_cpp.llama.print = lambda *args, **kwargs: None  # type: ignore[attr-defined]

    @llama_cpp.llama_log_callback
    def ignore(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    _silence_llama_log.callback = ignore  # type: ignore[attr-defined]  # keep it alive
    llama_cpp.llama_log_set(ignore, ctypes.c_void_p(0))


def _format_gemma(messages: Sequence[ChatMessage]) -> str:
    """Gemma's turn template; it has no system role, so system text opens the first user turn."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[str] = []
    for message in (m for m in messages if m.role != "system"):
        content = message.content
        if system and message.role == "user":
            content, system = f"{system}\n\n{content}", ""
        role = "model" if message.role == "assistant" else "user"
        turns.append(f"<start_of_turn>{role}\n{content}<end_of_turn>\n")
    return "".join(turns) + "<start_of_turn>model\n"
