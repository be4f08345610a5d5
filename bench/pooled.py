"""What splitting a model across ggml RPC lenders costs: tok/s and load time, unsplit vs split, as ratios in one run.

Three variants on the default embedded model, greedy, the same prompt and token
count (the texts are checked equal): the unsplit `LlamaEngine` (weight
repacking off, as a split model must run: see servers.split_worker); all layers on
one lender (`SplitEngine`); and the host plus two lenders (a third of the
layers each). Lenders are real `servers.rpc_lender` processes on loopback, and
every side gets `--threads` threads (default 1, so three processes share the
machine's cores as they would share three machines'). Each round loads and runs
every variant back to back, each leading in turn; ratios are to the unsplit
engine of the same round, so a busy machine slows all of them alike. Load time
is entering the engine until it is ready (a split engine also starts its child
and sends the lent weights: the lenders' tensor cache is cleared each round).

Then one counted run per split variant, through a loopback proxy in front of
each lender that parses ggml's RPC framing: the commands a host sends per
generated token, and the replies it waits for (round trips). llama.cpp's PR
6829 measured TinyLlama at 63 tok/s local, 60 through local RPC; Mesh-LLM cut
round trips per token from 558 to 8.

    python -m bench.pooled [--tokens 32] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import struct
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc

from servers.embedded_models import model_path
from servers.ggml_rpc import supports_rpc
from servers.llama_engine import LlamaEngine
from servers.rpc_lender import RpcLender
from servers.split_engine import Placement, SplitEngine

PROMPT = "The history of the printing press begins"
N_CTX = 512
UNSPLIT = "unsplit LlamaEngine"
ONE_LENDER = "all layers on one lender"
THREE_WAYS = "host + 2 lenders"


@dataclass
class _Frames:
    """Counts whole messages in one direction of a ggml RPC connection, from its framing."""

    with_command: bool  # host -> lender: cmd byte, u64 size, payload; lender -> host: u64 size, payload
    count: int = 0
    _buffer: bytes = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        header = 9 if self.with_command else 8
        while len(self._buffer) >= header:
            size = struct.unpack_from("<Q", self._buffer, header - 8)[0]
            if len(self._buffer) < header + size:
                return
            self._buffer = self._buffer[header + size :]
            self.count += 1


@dataclass
class _Counts:
    commands: int = 0
    replies: int = 0


@asynccontextmanager
async def _counting_proxy(target: str, counts: _Counts) -> AsyncIterator[str]:
    """A loopback proxy in front of a lender that counts the RPC messages each way; yields its endpoint."""
    host, _, port = target.rpartition(":")
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def pump(source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream, frames: _Frames, add: Callable[[int], None]) -> None:
        async for data in source:
            before = frames.count
            frames.feed(data)
            add(frames.count - before)
            await sink.send(data)
        await sink.send_eof()

    async def serve(client: anyio.abc.SocketStream) -> None:
        async with client, await anyio.connect_tcp(host, int(port)) as lender, anyio.create_task_group() as pumps:
            pumps.start_soon(pump, client, lender, _Frames(True), lambda n: setattr(counts, "commands", counts.commands + n))
            pumps.start_soon(pump, lender, client, _Frames(False), lambda n: setattr(counts, "replies", counts.replies + n))

    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, serve)
        yield f"127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}"
        task_group.cancel_scope.cancel()


async def _measure(engine: LlamaEngine, tokens: int) -> tuple[str, float, float]:
    """(text, load seconds, tok/s) of entering `engine` and one greedy completion."""
    started = time.perf_counter()
    async with engine:
        await engine.wait_ready()
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        done = await engine.complete(PROMPT, max_tokens=tokens, temperature=0.0)
        seconds = time.perf_counter() - started
    if done.usage.completion_tokens != tokens:
        raise SystemExit(f"{done.usage.completion_tokens} tokens instead of {tokens}: raise no stop, or pick another prompt")
    return done.text, loaded, tokens / seconds


def _placements(endpoints: list[str], layers: int) -> dict[str, Placement]:
    third = layers // 3
    return {ONE_LENDER: [(endpoints[0], layers)], THREE_WAYS: [(endpoints[0], third), (endpoints[1], layers - 2 * third)]}


async def run(tokens: int, rounds: int, threads: int) -> None:
    if not supports_rpc():
        raise SystemExit("this llama-cpp-python has no RPC backend; rebuild it with -DGGML_RPC=ON (make does)")
    path = model_path("default")
    scratch = Path(tempfile.mkdtemp(prefix="mcpfed-bench-pooled-"))
    rates: dict[str, list[float]] = {UNSPLIT: [], ONE_LENDER: [], THREE_WAYS: []}
    loads: dict[str, list[float]] = {name: [] for name in rates}
    ratios: dict[str, list[float]] = {ONE_LENDER: [], THREE_WAYS: []}
    load_ratios: dict[str, list[float]] = {ONE_LENDER: [], THREE_WAYS: []}
    try:
        async with AsyncExitStack() as stack:
            lenders = [await stack.enter_async_context(RpcLender(mem_mb=1024, cache_dir=scratch / f"cache{i}", threads=threads)) for i in range(2)]
            layers = SplitEngine(path, [(lenders[0].endpoint, 1)]).offloadable_layers
            placements = _placements([lender.endpoint for lender in lenders], layers)

            def engine(name: str) -> LlamaEngine:
                if name == UNSPLIT:
                    return LlamaEngine(path, n_ctx=N_CTX, n_threads=threads, repack=False)  # as a split model runs
                return SplitEngine(path, placements[name], n_ctx=N_CTX, n_threads=threads)

            for round_number in range(rounds):
                for lender in lenders:
                    await anyio.to_thread.run_sync(_empty, lender.cache_dir)
                names = list(rates)
                order = names[round_number % 3 :] + names[: round_number % 3]
                texts, rate, load = {}, {}, {}
                for name in order:
                    texts[name], load[name], rate[name] = await _measure(engine(name), tokens)
                if len(set(texts.values())) != 1:
                    raise SystemExit(f"the variants generated different text: {texts}")
                for name in rates:
                    rates[name].append(rate[name])
                    loads[name].append(load[name])
                for name in ratios:
                    ratios[name].append(rate[name] / rate[UNSPLIT])
                    load_ratios[name].append(load[name] / load[UNSPLIT])
                print(f"round {round_number + 1}: " + "   ".join(f"{n} {rate[n]:5.1f} tok/s, load {load[n]:.2f} s" for n in names), flush=True)
            trips = {name: await _count_round_trips(placements[name], path, tokens, threads) for name in ratios}
    finally:
        await anyio.to_thread.run_sync(shutil.rmtree, scratch)
    _report(tokens, rounds, threads, layers, rates, loads, ratios, load_ratios, trips)


async def _count_round_trips(placement: Placement, path: Path, tokens: int, threads: int) -> tuple[float, float]:
    """(commands, replies) per generated token for one completion, through counting proxies."""
    counts = [_Counts() for _ in placement]
    async with AsyncExitStack() as stack:
        proxied = [(await stack.enter_async_context(_counting_proxy(endpoint, count)), n) for (endpoint, n), count in zip(placement, counts, strict=True)]
        async with SplitEngine(path, proxied, n_ctx=N_CTX, n_threads=threads) as engine:
            await engine.wait_ready()
            before = _Counts(sum(c.commands for c in counts), sum(c.replies for c in counts))
            await engine.complete(PROMPT, max_tokens=tokens, temperature=0.0)
            commands = sum(c.commands for c in counts) - before.commands
            replies = sum(c.replies for c in counts) - before.replies
    return commands / tokens, replies / tokens


def _empty(folder: Path) -> None:
    for entry in folder.iterdir():
        entry.unlink()


def _report(
    tokens: int,
    rounds: int,
    threads: int,
    layers: int,
    rates: dict[str, list[float]],
    loads: dict[str, list[float]],
    ratios: dict[str, list[float]],
    load_ratios: dict[str, list[float]],
    trips: dict[str, tuple[float, float]],
) -> None:
    print(f"\nPooled compute: default embedded model ({layers} layers), {tokens} tokens, greedy, {threads} thread(s) per process, {rounds} rounds, loopback")
    print(f"{'variant':<28}{'best tok/s':>11}{'median ×':>10}{'load s':>8}{'load ×':>8}{'cmds/token':>12}{'waits/token':>13}")
    print(f"{UNSPLIT:<28}{max(rates[UNSPLIT]):>11.1f}{1.0:>9.2f}×{statistics.median(loads[UNSPLIT]):>8.2f}{1.0:>7.2f}×")
    for name in ratios:
        commands, replies = trips[name]
        print(
            f"{name:<28}{max(rates[name]):>11.1f}{statistics.median(ratios[name]):>9.2f}×{statistics.median(loads[name]):>8.2f}"
            f"{statistics.median(load_ratios[name]):>7.2f}×{commands:>12.1f}{replies:>13.1f}"
        )
    print("(median ×: the median of per-round ratios to the unsplit engine; cmds/token: RPC commands the host sent per")
    print(" generated token, prompt included; waits/token: the replies it waited for, i.e. round trips)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    anyio.run(run, args.tokens, args.rounds, args.threads)


if __name__ == "__main__":
    main()
