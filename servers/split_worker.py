"""The child process that holds a split model: `SplitEngine` (servers.split_engine) runs one per placement.

Why a child: ggml's RPC client ABORTS its process when a lender dies, fails its
handshake or cannot be reached, and the peer must outlive its lenders. So the
model lives here, and the parent sees a dead lender as this process ending.

It registers each lender's RPC device, loads the model with a `LlamaEngine`
whose layers go to those devices only (`llama_model_params.devices`), the last
`n` layers of the model to the last lender, and so on; the first layers stay
here. Weight repacking is off (`LlamaEngine(repack=False)`): the local CPU
backend would repack its weights and the lenders cannot, so greedy output
would match no unsplit model; without it, it matches the unsplit model's
loaded the same way, token for token.

Protocol, JSON lines. In (stdin): `{"id": n, "op": "complete" | "chat" | "embed",
"args": {...}}` and `{"id": n, "op": "cancel"}`; EOF means stop. Out (the
original stdout; ggml's own prints go to stderr): first `{"ready": describe}` or
`{"failed": message}` (with `"out_of_memory": endpoint` when a lender lacked the memory), then per request `{"id": n, "token": text}`..., and one
`{"id": n, "done": result}` or `{"id": n, "error": type, "message": text}`.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.to_thread

from servers import ggml_rpc
from servers.fair_queue import QueueFull
from servers.llama_engine import ChatMessage, LlamaEngine, ModelUnavailable, RequestRejected, _silence_llama_log
from servers.parent_death import die_with_parent

__all__ = ["main"]

_BUFFER_LINE = re.compile(r"(\S+) model buffer size =\s+([\d.]+) MiB")
_NO_MEMORY = re.compile(r"allocate RPC\d*\[([^\]]+)\] buffer(?: of size (\d+))?")
"""llama.cpp's log when a lender refused a buffer: its weights ("unable to allocate") or a working buffer ("failed to allocate ... of size")."""


class _PlacedEngine(LlamaEngine):
    """A LlamaEngine whose offloaded layers go to the registered RPC devices, split as the placement says."""

    def __init__(self, path: Path, layers: list[int], devices: list[int], *, n_ctx: int, n_threads: int | None) -> None:
        super().__init__(path, n_ctx=n_ctx, n_gpu_layers=sum(layers), n_threads=n_threads, repack=False)
        self._layers = layers
        self._devices = (ctypes.c_void_p * (len(devices) + 1))(*devices, None)  # NULL-terminated, kept alive here

    def llama_settings(self, *, embedding: bool = False) -> dict[str, Any]:
        return super().llama_settings(embedding=embedding) | {"tensor_split": [float(n) for n in self._layers]}

    def model_params(self) -> dict[str, Any]:
        return super().model_params() | {"devices": ctypes.addressof(self._devices)}


class _LogWatch:
    """llama.cpp's log, silenced but read: where the weights went ("<buffer> model buffer size = X MiB") and the errors.

    The errors say why a load failed ("unable to allocate RPC0[...] buffer"),
    which llama-cpp-python's exception does not.
    """

    _ERROR = 4  # GGML_LOG_LEVEL_ERROR

    def __init__(self) -> None:
        import llama_cpp

        self.buffer_mib: dict[str, float] = {}
        self.errors: list[str] = []
        _silence_llama_log()  # cached: the engine's later call keeps our callback
        self._callback = llama_cpp.llama_log_callback(self._log)  # kept alive with this object
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    def _log(self, level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace").strip()
        if found := _BUFFER_LINE.search(line):
            self.buffer_mib[found.group(1)] = self.buffer_mib.get(found.group(1), 0.0) + float(found.group(2))
        elif level == self._ERROR and line:
            self.errors.append(line)


class _Worker:
    def __init__(self, engine: _PlacedEngine, out: IO[str]) -> None:
        self.engine = engine
        self.out = out
        self.scopes: dict[int, anyio.CancelScope] = {}

    def send(self, message: dict[str, Any]) -> None:
        _send(self.out, message)

    async def serve(self) -> None:
        async with anyio.create_task_group() as task_group:
            while line := await anyio.to_thread.run_sync(sys.stdin.readline):
                request = json.loads(line)
                if request["op"] == "cancel":
                    if scope := self.scopes.get(request["id"]):
                        scope.cancel()
                    continue
                self.scopes[request["id"]] = anyio.CancelScope()
                task_group.start_soon(self.handle, request)
            task_group.cancel_scope.cancel()  # EOF: the parent is gone or stopping us

    async def handle(self, request: dict[str, Any]) -> None:
        number = request["id"]

        async def token(text: str) -> None:
            self.send({"id": number, "token": text})

        with self.scopes[number]:
            try:
                result = await self.run(request["op"], request["args"], token)
                self.send({"id": number, "done": result})
            except (RequestRejected, ModelUnavailable, QueueFull) as exc:
                self.send({"id": number, "error": type(exc).__name__, "message": str(exc)})
        self.scopes.pop(number, None)

    async def run(self, op: str, args: dict[str, Any], token: Any) -> Any:
        if op == "complete":
            return asdict(await self.engine.complete(args.pop("prompt"), on_token=token, **args))
        if op == "chat":
            messages = [ChatMessage(m["role"], m["content"]) for m in args.pop("messages")]
            return asdict(await self.engine.chat(messages, on_token=token, **args))
        if op == "embed":
            return await self.engine.embed(args["texts"])
        raise RequestRejected(f"unknown operation {op!r}")


async def _run(args: argparse.Namespace, out: IO[str]) -> int:
    log = _LogWatch()
    placement: list[tuple[str, int]] = [(endpoint, int(n)) for endpoint, n in json.loads(args.placement)]
    # The parent probed every endpoint: an unreachable one would abort this process here.
    devices = [ggml_rpc.add_server(endpoint)[0] for endpoint, _ in placement]
    engine = _PlacedEngine(Path(args.model), [n for _, n in placement], devices, n_ctx=args.n_ctx, n_threads=args.threads)
    async with engine:
        try:
            await engine.wait_ready()
        except ModelUnavailable:
            _send(out, _failure(log.errors))
            return 1
        _send(out, {"ready": engine.describe() | {"buffer_mib": log.buffer_mib}})
        await _Worker(engine, out).serve()
    return 0


def _failure(errors: list[str]) -> dict[str, Any]:
    """Why the load failed: a lender out of lent memory in one sentence (llama.cpp's own words blame the file), else its last errors."""
    for line in errors:
        if found := _NO_MEMORY.search(line):
            endpoint, size = found.groups()
            short = f"{-(-int(size) // 2**20)} MiB" if size else "the memory"
            return {
                "failed": f"lender {endpoint} could not allocate {short} for its layers or llama.cpp's working buffers: "
                f"restart it with --lend-mem at least {short} larger, or give it fewer layers",
                "out_of_memory": endpoint,
            }
    return {"failed": "; ".join(errors[-3:]) or "llama.cpp gave no reason"}


def _send(out: IO[str], message: dict[str, Any]) -> None:
    """A short blocking write: the parent reads continuously, and this process serves nobody else."""
    out.write(json.dumps(message) + "\n")
    out.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m servers.split_worker", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--placement", required=True, help='JSON: [["127.0.0.1:PORT", layers], ...]')
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    die_with_parent()  # the model and its tunnels are the peer's: they go with it
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # ggml printf()s to stdout; keep it for the protocol
    sys.exit(anyio.run(_run, args, out))


if __name__ == "__main__":
    main()
