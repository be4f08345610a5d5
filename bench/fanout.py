"""Fan-out: two answers from two model peers at once vs one after the other.

Each peer is its own `mcpfed serve` process with one thread (this machine has
two cores, and on a real mesh each peer has its own machine), so the ratio
shows what spreading work buys.

    python -m bench.fanout [--rounds 3] [--tokens 48]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from federation import Mesh


async def run(rounds: int, tokens: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="mcpfed-bench-"))

    peers = [
        subprocess.Popen(
            [sys.executable, "-m", "federation.cli", "serve", "--port", "0", "--name", name, "--threads", "1", "--ctx", "1024", "--mdns", "off"],
            env=os.environ | {"MCPFED_HOME": str(home / name)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for name in ("alice", "bob")
    ]
    try:
        urls = [await anyio.to_thread.run_sync(p.stdout.readline) for p in peers if p.stdout is not None]
        async with Mesh.connect(peers=[u.strip() for u in urls], home=home, mdns="off", wait_for=2) as mesh:
            sequential, parallel = [], []
            for _ in range(rounds):
                started = time.perf_counter()
                for _ in range(2):
                    await mesh.ask("Name a colour and say why.", max_tokens=tokens, temperature=0.0)
                sequential.append(time.perf_counter() - started)
                started = time.perf_counter()
                answers = await mesh.fan_out("Name a colour and say why.", n=2, max_tokens=tokens, temperature=0.0)
                parallel.append(time.perf_counter() - started)
                assert len({a.peer for a in answers}) == 2, "fan-out used two distinct peers"
    finally:
        for process in peers:
            process.kill()
            process.wait()
    seq, par = statistics.median(sequential), statistics.median(parallel)
    print(f"\nFan-out of n=2 over two model peers ({tokens} tokens each, 1 thread per peer, median of {rounds})")
    print(f"{'sequential: ask, then ask':<40}{seq:>8.2f} s   1.00×")
    print(f"{'mesh_fan_out(n=2)':<40}{par:>8.2f} s   {par / seq:.2f}×  (speed-up {seq / par:.2f}×)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    anyio.run(run, args.rounds, args.tokens)


if __name__ == "__main__":
    main()
