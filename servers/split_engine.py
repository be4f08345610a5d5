"""One model split across this peer and ggml RPC lenders, behind the same interface as `LlamaEngine`.

`SplitEngine(path, [("127.0.0.1:PORT", 6), ("127.0.0.1:PORT2", 5)])` keeps the
model's first layers here and puts the last 5 on the second lender, the 6
before them on the first (a "layer" is one of the model's repeating blocks or
its output layer: block_count + 1 in all). The model runs in a child process
(`servers.split_worker`), because ggml's RPC client aborts whoever holds the
model when a lender dies; tokens stream back over its stdout.

Every endpoint is probed before the child starts (an unreachable one would
abort it mid-load), so a bad placement fails with an error naming the lender.
A lender lost later ends the child: the call in progress fails with
`LenderLost` naming it (the endpoints are probed to find which), the engine
reports "failed", and `await engine.replace(new_placement)` loads the model
again without it. The queue, the load wait and the states are `LlamaEngine`'s,
inherited, so the model server and the peer treat both engines alike.
"""

from __future__ import annotations

import collections
import json
import re
import sys
from collections.abc import Hashable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.memory import MemoryObjectSendStream
from anyio.streams.text import TextReceiveStream

from servers import ggml_rpc
from servers.fair_queue import DEFAULT_QUEUE_LIMIT, MODEL_LOST_PREFIX
from servers.llama_engine import (
    REPEAT_PENALTY,
    ChatMessage,
    Completion,
    EngineState,
    LlamaEngine,
    ModelUnavailable,
    RequestRejected,
    TokenCallback,
    Usage,
)
from servers.parent_death import child_environment

__all__ = ["LenderLost", "Placement", "SplitEngine"]

Placement = Sequence[tuple[str, int]]
"""Where the offloaded layers go: `(endpoint, n_layers)` in order; the layers before them stay local."""

_ERRORS: dict[str, type[Exception]] = {cls.__name__: cls for cls in (RequestRejected, ModelUnavailable)}
_STOP_TIMEOUT_S = 5.0
_REASON = re.compile(r"error|exception|abort|failed", re.IGNORECASE)
"""A line of the child's stderr that says why it ended (the rest is tracebacks' decoration)."""
_PROBE_TIMEOUT_S = 2.0


class LenderLost(ModelUnavailable):
    """A lender went away while it held layers of the model; the message names it and says what to do."""

    def __init__(self, message: str, endpoints: list[str]) -> None:
        super().__init__(message if message.startswith(MODEL_LOST_PREFIX) else MODEL_LOST_PREFIX + message)
        self.endpoints = endpoints


class SplitEngine(LlamaEngine):
    """A model split across lenders; `async with` loads it in a child process, exit stops the child.

    ```python
    async with SplitEngine(path, [(lender.endpoint, 9)]) as engine:
        await engine.wait_ready()
        done = await engine.complete("Hello", max_tokens=16)
    ```
    """

    def __init__(
        self,
        path: str | Path,
        placement: Placement,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        load_wait: float = 0.0,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        queue_per_caller: int | None = None,
    ) -> None:
        super().__init__(path, n_ctx=n_ctx, n_threads=n_threads, load_wait=load_wait, queue_limit=queue_limit, queue_per_caller=queue_per_caller)
        self.placement = self._checked(placement)
        self.n_gpu_layers = sum(n for _, n in self.placement)
        self._child: anyio.abc.Process | None = None
        self._child_scope = anyio.CancelScope()
        self._child_done = anyio.Event()
        self._child_said: collections.deque[str] = collections.deque(maxlen=20)
        self._child_info: dict[str, Any] = {}
        self._replies: dict[int, MemoryObjectSendStream[dict[str, Any]]] = {}
        self._next_id = 0
        self._lost: LenderLost | None = None

    @property
    def offloadable_layers(self) -> int:
        """The model's repeating blocks plus its output layer: what a placement divides."""
        blocks = self.info.metadata.get(f"{self.info.architecture}.block_count")
        return int(blocks) + 1 if isinstance(blocks, int) else 0

    def _checked(self, placement: Placement) -> list[tuple[str, int]]:
        checked = []
        for endpoint, layers in placement:
            host, _, port = str(endpoint).rpartition(":")
            if not host or not port.isdigit() or not isinstance(layers, int) or layers < 1:
                raise ValueError(f"bad placement entry ({endpoint!r}, {layers!r}); give ('host:port', layers) with layers at least 1.")
            checked.append((f"{host}:{port}", layers))
        if not checked:
            raise ValueError("the placement is empty; give at least one ('host:port', layers), or use LlamaEngine.")
        total, most = sum(n for _, n in checked), self.offloadable_layers
        if most and total > most:
            raise ValueError(f"the placement puts {total} layers on lenders but {self.info.name} has {most}; place fewer.")
        return checked

    # -- lifecycle -------------------------------------------------------
    async def __aenter__(self) -> SplitEngine:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._start_child()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Refuse new requests, stop the child (the call in progress gets "shutting down"), wait for it to end."""
        self.state = EngineState.CLOSED
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(exc_type, exc, tb)

    async def replace(self, placement: Placement) -> None:
        """Load the model again with a new placement (after `LenderLost`, say); returns once it is ready.

        The call in progress, if any, fails with "re-placed"; `ModelUnavailable`
        if the new placement cannot load.
        """
        self.placement = self._checked(placement)
        self.n_gpu_layers = sum(n for _, n in self.placement)
        self._child_scope.cancel()
        await self._child_done.wait()
        self._start_child()
        await self.wait_ready()

    def _start_child(self) -> None:
        assert self._task_group is not None
        self.state, self.error, self._lost, self._child_info = EngineState.LOADING, None, None, {}
        self._ready, self._child_done, self._child_scope = anyio.Event(), anyio.Event(), anyio.CancelScope()
        self._task_group.start_soon(self._run_child, list(self.placement))

    async def _run_child(self, placement: list[tuple[str, int]]) -> None:
        """Probe the lenders, run the child until it ends or is stopped, and say why it ended."""
        try:
            with self._child_scope:
                await self._probe_all(placement)
                await self._supervise(placement)
        except ggml_rpc.LenderUnreachable as exc:
            self._fail(f"could not load {self.info.name} split across lenders: {exc}")
        except (OSError, ggml_rpc.RpcUnavailable) as exc:
            self._fail(f"could not start the process for the split model {self.info.name}: {exc}")
        finally:
            self._ready.set()
            self._child_done.set()

    async def _probe_all(self, placement: list[tuple[str, int]]) -> None:
        if not ggml_rpc.supports_rpc():
            raise ggml_rpc.RpcUnavailable("this llama-cpp-python has no RPC backend; rebuild it with -DGGML_RPC=ON (make does, see README).")
        for endpoint, _ in placement:
            await anyio.to_thread.run_sync(ggml_rpc.probe, endpoint, _PROBE_TIMEOUT_S)

    async def _supervise(self, placement: list[tuple[str, int]]) -> None:
        command = [sys.executable, "-m", "servers.split_worker", "--model", str(self.info.path), "--placement", json.dumps(placement)]
        command += ["--n-ctx", str(self.n_ctx), "--threads", str(self.n_threads)]
        process = await anyio.open_process(command, env=child_environment())
        self._child = process
        try:
            async with anyio.create_task_group() as task_group:
                assert process.stdout is not None and process.stderr is not None
                task_group.start_soon(self._keep_stderr, process.stderr)
                await self._read_replies(process.stdout)
                await process.wait()  # the stderr reader ends with the child, keeping its last words
        finally:
            self._child = None
            with anyio.CancelScope(shield=True):
                await _stop(process)
            self._end_replies()
        await self._explain_exit(placement, process.returncode)

    async def _read_replies(self, stdout: anyio.abc.ByteReceiveStream) -> None:
        """Hand each of the child's messages to its request; the first says whether the model loaded."""
        async for line in _lines(stdout):
            message = json.loads(line)
            if "ready" in message:
                self._child_info = message["ready"]
                self._sha256 = self._child_info.get("sha256") or None
                self.state = EngineState.READY
                self._ready.set()
            elif "out_of_memory" in message:
                self._fail(f"could not load {self.info.name}: {message['failed']}.")
            elif "failed" in message:
                lenders = ", ".join(f"{n} on {endpoint}" for endpoint, n in self.placement)
                self._fail(
                    f"could not load {self.info.name} split as local + {lenders}: {message['failed']}. "
                    "A lender may lack the memory for its layers: place fewer layers on it."
                )
            elif (reply := self._replies.get(message.get("id", -1))) is not None:
                reply.send_nowait(message)

    async def _keep_stderr(self, stderr: anyio.abc.ByteReceiveStream) -> None:
        async for line in _lines(stderr):
            if line.strip():
                self._child_said.append(line.strip())

    async def _explain_exit(self, placement: list[tuple[str, int]], code: int | None) -> None:
        """The child ended on its own: find the lenders that no longer answer and fail with their names."""
        if self.state is EngineState.FAILED or self.state is EngineState.CLOSED:
            return
        lost = []
        for endpoint, _ in placement:
            try:
                await anyio.to_thread.run_sync(ggml_rpc.probe, endpoint, _PROBE_TIMEOUT_S)
            except ggml_rpc.LenderUnreachable:
                lost.append(endpoint)
        if lost:
            names = ", ".join(lost)
            message = (
                f"lost the lender at {names}, which held layers of {self.info.name}; "
                "re-place the model without it (SplitEngine.replace) and retry."
            )
        else:
            said = next((line for line in reversed(self._child_said) if _REASON.search(line)), "nothing")
            message = f"the process holding the split model {self.info.name} ended (status {code}, last said: {said}); every lender still answers, so reload it (SplitEngine.replace) and retry."
        self._lost = LenderLost(message, lost)
        self._fail(message)

    def _fail(self, message: str) -> None:
        if self.state is not EngineState.CLOSED:
            self.state, self.error = EngineState.FAILED, message
        self._ready.set()

    def _end_replies(self) -> None:
        for reply in self._replies.values():
            reply.close()
        self._replies.clear()

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
        """As `LlamaEngine.complete`; `LenderLost` if a lender goes away meanwhile."""
        args = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p}
        args |= {"repeat_penalty": repeat_penalty, "stop": list(stop or []), "seed": seed}
        return _completion(await self._queued_call("complete", args, on_token, caller))

    async def chat(self, messages: Sequence[ChatMessage], *, stop: Sequence[str] | None = None, **options: Any) -> Completion:
        """As `LlamaEngine.chat`; the child formats the turns, since the template needs the loaded model."""
        on_token, caller = options.pop("on_token", None), options.pop("caller", None)
        args = {"messages": [{"role": m.role, "content": m.content} for m in messages], "stop": list(stop or [])} | options
        return _completion(await self._queued_call("chat", args, on_token, caller))

    async def embed(self, texts: Sequence[str], *, caller: Hashable = None) -> list[list[float]]:
        vectors: list[list[float]] = await self._queued_call("embed", {"texts": list(texts)}, None, caller)
        return vectors

    async def _queued_call(self, op: str, args: dict[str, Any], on_token: TokenCallback | None, caller: Hashable) -> Any:
        await self._until_loaded()
        async with self._queue.turn(caller):
            self._require_ready()
            result = await self._call(op, args, on_token)
        self.requests_served += 1
        return result

    async def _call(self, op: str, args: dict[str, Any], on_token: TokenCallback | None) -> Any:
        """Send one request to the child and stream its reply; the child's end becomes `LenderLost`."""
        child = self._child
        self._next_id += 1
        number = self._next_id
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](float("inf"))
        self._replies[number] = send
        finished = False
        try:
            if child is None or child.stdin is None:
                raise ModelUnavailable(self.error or f"model {self.info.name} is not loaded; retry in a moment.")
            try:
                await child.stdin.send((json.dumps({"id": number, "op": op, "args": args}) + "\n").encode())
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # the child is ending: its end explains why, below
            async with receive:
                async for message in receive:
                    if "token" in message:
                        if on_token is not None:
                            await on_token(message["token"])
                    elif "done" in message:
                        finished = True
                        return message["done"]
                    else:
                        finished = True
                        raise _ERRORS.get(message["error"], ModelUnavailable)(message["message"])
            finished = True
            await self._child_done.wait()
            if self.state is EngineState.CLOSED:
                raise ModelUnavailable("the model server is shutting down; send the request to another server.")
            raise self._lost or ModelUnavailable(self.error or f"the split model {self.info.name} was re-placed during the call; retry.")
        finally:
            self._replies.pop(number, None)
            if not finished and child is not None and child.stdin is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    try:
                        await child.stdin.send((json.dumps({"id": number, "op": "cancel"}) + "\n").encode())
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        pass

    # -- description -----------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """`LlamaEngine.describe` plus where the layers are: here, then per lender its endpoint, layers and weight bytes."""
        buffers: dict[str, float] = self._child_info.get("buffer_mib", {})
        here = {"endpoint": "local", "layers": max(0, self.offloadable_layers - self.n_gpu_layers), "bytes": _bytes_on(buffers, "CPU")}
        lent = [{"endpoint": endpoint, "layers": layers, "bytes": _bytes_on(buffers, f"[{endpoint}]")} for endpoint, layers in self.placement]
        return super().describe() | {"placement": [here, *lent]}


def _bytes_on(buffers: dict[str, float], where: str) -> int | None:
    """Weight bytes llama.cpp reported in buffers named with `where` ("CPU...", "RPC0[endpoint]"); None before the load."""
    if not buffers:
        return None
    return round(sum(mib for name, mib in buffers.items() if name.startswith(where) or where in name) * 2**20)


def _completion(result: dict[str, Any]) -> Completion:
    return Completion(text=result["text"], finish_reason=result["finish_reason"], usage=Usage(**result["usage"]))


async def _lines(stream: anyio.abc.ByteReceiveStream) -> Any:
    """Whole lines from a byte stream (a child's pipe delivers them in arbitrary chunks)."""
    pending = ""
    async for chunk in TextReceiveStream(stream, errors="replace"):
        pending += chunk
        *whole, pending = pending.split("\n")
        for line in whole:
            yield line


async def _stop(process: anyio.abc.Process) -> None:
    """End the child: EOF on its stdin asks it to free the model and exit; SIGKILL if it has not after a while."""
    if process.stdin is not None:
        await process.stdin.aclose()
    with anyio.move_on_after(_STOP_TIMEOUT_S):
        await process.wait()
    if process.returncode is None:
        process.kill()
    await process.aclose()
