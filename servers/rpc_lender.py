"""Lend this machine's compute: a ggml RPC server on loopback, with a memory cap and a bounded cache.

`python -m servers.rpc_lender --port P --mem-mb M --cache-dir D [--threads T]`
prints one line, `ready 127.0.0.1:P mem_mb=M threads=T device=D`, once it answers
ggml's HELLO, and exits with status 0 on SIGTERM or SIGINT.

Why a process of its own: ggml's server blocks forever in C and has no stop
function, so stopping it means ending the process. Why loopback only: ggml RPC
has no authentication or encryption (llama.cpp's docs: never expose it); a host
reaches a lender only through the mesh's authenticated tunnel.

The memory cap: hosts may allocate M MiB in all on the lender, and it reports
that as its device's memory (what a host's planner reads); a host that asks
for more gets a failed load (`servers.ggml_memory_cap`). The cache: ggml keeps every large tensor it receives in
`--cache-dir` (so a reload skips sending it) and never deletes any, so the
oldest files are pruned at start down to `--cache-mb`.

`RpcLender` runs one as a supervised child of an async program.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import anyio
import anyio.abc
from anyio.streams.text import TextReceiveStream

from servers import ggml_rpc
from servers.parent_death import child_environment, die_with_parent

__all__ = ["LenderFailed", "RpcLender", "main", "prune_cache"]

DEFAULT_CACHE_MB = 4096
_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 5.0


class LenderFailed(RuntimeError):
    """A lender process did not start; the message carries what it said."""


def prune_cache(cache_dir: Path, limit_bytes: int) -> int:
    """Delete the oldest files of `cache_dir` until the rest fit in `limit_bytes`; returns the bytes freed."""
    files = [(entry.stat().st_mtime, entry.stat().st_size, entry) for entry in cache_dir.iterdir() if entry.is_file()]
    total = sum(size for _, size, _ in files)
    freed = 0
    for _, size, entry in sorted(files, key=lambda item: item[0]):
        if total - freed <= limit_bytes:
            break
        entry.unlink(missing_ok=True)
        freed += size
    return freed


def _serve(endpoint: str, cache_dir: Path, threads: int, mem_bytes: int, ready_out: object) -> int:
    """Run the server on a thread, say "ready" once it answers HELLO, and end the process on SIGTERM."""
    failed = threading.Event()

    device = ggml_rpc.lend_device()

    def run() -> None:
        ggml_rpc.start_server(endpoint, str(cache_dir), threads, mem_bytes, device)
        failed.set()  # start_server returns only when it could not bind (its reason is on stderr)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=run, name="ggml-rpc-server", daemon=True).start()
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while True:
        if failed.is_set() or stop.is_set() or time.monotonic() > deadline:
            print(f"error: the ggml RPC server did not start on {endpoint} (is the port in use?)", file=sys.stderr)
            return 1
        try:
            ggml_rpc.probe(endpoint, timeout=1.0)
            break
        except ggml_rpc.LenderUnreachable:
            time.sleep(0.05)
    print(f"ready {endpoint} mem_mb={mem_bytes // 2**20} threads={threads} device={ggml_rpc.device_name(device)}", file=ready_out, flush=True)  # type: ignore[call-overload]
    while not (stop.wait(0.5) or failed.is_set()):
        pass
    return 0 if stop.is_set() else 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m servers.rpc_lender", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="bind address; loopback only (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="TCP port to serve ggml RPC on")
    parser.add_argument("--mem-mb", type=int, required=True, help="memory lent to hosts, in MiB")
    parser.add_argument("--cache-dir", type=Path, required=True, help="where ggml caches received tensors")
    parser.add_argument("--cache-mb", type=int, default=DEFAULT_CACHE_MB, help=f"the cache's size limit in MiB, pruned at start (default: {DEFAULT_CACHE_MB})")
    parser.add_argument("--threads", type=int, default=None, help="compute threads (default: all cores)")
    args = parser.parse_args(argv)
    die_with_parent()  # a SIGKILLed peer must not leave its RPC port served
    try:
        ggml_rpc.check_loopback(args.host)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    if not 0 < args.port < 65536 or args.mem_mb <= 0 or args.cache_mb < 0:
        parser.exit(2, "error: --port must be 1-65535, --mem-mb above 0 and --cache-mb at least 0.\n")
    if not ggml_rpc.supports_rpc():
        parser.exit(1, "error: this llama-cpp-python has no RPC backend; rebuild it with -DGGML_RPC=ON (make does, see README).\n")
    try:
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        prune_cache(args.cache_dir, args.cache_mb * 2**20)
    except OSError as exc:
        parser.exit(1, f"error: cannot use --cache-dir {args.cache_dir}: {exc.strerror or exc}\n")
    ready_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # ggml printf()s its banner and every connection to stdout; keep stdout for the one ready line
    threads = args.threads or max(1, len(os.sched_getaffinity(0)))
    mem_bytes = args.mem_mb * 2**20
    code = _serve(f"{args.host}:{args.port}", args.cache_dir, threads, mem_bytes, ready_out)
    sys.stderr.flush()
    os._exit(code)  # the server thread never returns; exiting the interpreter around it could run ggml's destructors under it


class RpcLender:
    """A lender as a supervised child: `async with RpcLender(mem_mb=..., cache_dir=...) as lender: lender.endpoint`.

    Port 0 picks a free loopback port. Exit stops the lender (SIGTERM, then
    SIGKILL after a few seconds); what it printed is kept for error messages.
    `device` is what it lends, as its ready line says ("cpu", or a GPU's name).
    """

    def __init__(self, *, mem_mb: int, cache_dir: str | Path, port: int = 0, threads: int | None = None, cache_mb: int = DEFAULT_CACHE_MB) -> None:
        self.mem_mb = mem_mb
        self.cache_dir = Path(cache_dir)
        self.port = port
        self.threads = threads
        self.cache_mb = cache_mb
        self._process: anyio.abc.Process | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._said: collections.deque[str] = collections.deque(maxlen=20)
        self.device = "cpu"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None, "the lender is not running"
        return self._process.pid

    async def __aenter__(self) -> RpcLender:
        if self.port == 0:
            self.port = _free_port()
        command = [sys.executable, "-m", "servers.rpc_lender", "--port", str(self.port), "--mem-mb", str(self.mem_mb)]
        command += ["--cache-dir", str(self.cache_dir), "--cache-mb", str(self.cache_mb)]
        if self.threads:
            command += ["--threads", str(self.threads)]
        self._process = await anyio.open_process(command, stdin=None, env=child_environment())
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        assert self._process.stderr is not None
        self._task_group.start_soon(self._keep_stderr, self._process.stderr)
        try:
            await self._wait_ready()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def wait(self) -> int:
        """Until the lender process ends (it crashed, or was killed); its exit status."""
        assert self._process is not None, "the lender is not running"
        return await self._process.wait()

    async def _wait_ready(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        with anyio.move_on_after(_READY_TIMEOUT_S + 5):
            async for line in TextReceiveStream(self._process.stdout):
                if line.startswith("ready "):
                    self.device = line.split("device=", 1)[-1].split()[0] if "device=" in line else self.device
                    return
                break
        await anyio.sleep(0.1)  # let the stderr reader catch the reason
        said = " / ".join(self._said) or "nothing"
        raise LenderFailed(f"the RPC lender on port {self.port} did not start; it said: {said}")

    async def _keep_stderr(self, stream: anyio.abc.ByteReceiveStream) -> None:
        async for chunk in TextReceiveStream(stream, errors="replace"):
            self._said.extend(line for line in chunk.splitlines() if line.strip())

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        process, self._process = self._process, None
        if process is not None:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.terminate()
                    with anyio.move_on_after(_STOP_TIMEOUT_S):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                await process.aclose()
        if self._task_group is not None:
            task_group, self._task_group = self._task_group, None
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)


def _free_port() -> int:
    """A loopback port free right now (ggml cannot bind port 0 and tell us which it got)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
