"""A hop under load: N concurrent calls through one peer against N concurrent direct calls.

Two real `mcpfed serve` processes on loopback: `srv` shares notes, `front`
knows `srv` (`--peer`). The client fires N `search_notes` calls at once at
`srv` directly, then N `srv__search_notes` calls at once at `front` (one
hop), each batch from one long-lived SDK session, and reports errors and
per-call p50/p99 latency and the batch's wall time, as ratios to the direct
batch of the same run. A hop must hold whatever load the peer behind it
holds: the goal is zero errors at any N the peer itself survives.

    python -m bench.load [--calls 1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
from mcp import Client

from bench._util import percentile

NOTES = Path(__file__).resolve().parent.parent / "examples" / "notes"


@contextmanager
def peer_process(home: Path, name: str, *extra: str) -> Iterator[str]:
    """A `mcpfed serve` child on an ephemeral port; yields its MCP URL, kills it on exit."""
    with child_process(home / f"{name}.log", "-m", "federation.cli", "serve", "--port", "0", "--name", name, "--model", "none", "--mdns", "off", *extra, home=home / name) as url:
        yield url


@contextmanager
def child_process(log_path: Path, *argv: str, home: Path | None = None) -> Iterator[str]:
    """`python *argv` that prints its URL as its first line; yields it, stops the child on exit (stderr to `log_path`)."""
    with log_path.open("w") as log:  # the child's stderr, kept for a failed run
        process = subprocess.Popen(
            [sys.executable, *argv],
            env=os.environ | ({"MCPFED_HOME": str(home)} if home else {}),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def burst(url: str, tool: str, calls: int) -> tuple[list[float], int, float, str | None]:
    """`calls` concurrent calls on one session: (latencies ms, errors, wall s, first error)."""
    latencies: list[float] = []
    errors: list[str] = []
    async with Client(url, read_timeout_seconds=120) as client:
        await client.call_tool(tool, {"query": "relay"})  # warm the session and the hop's connections

        async def one() -> None:
            started = time.perf_counter()
            try:
                result = await client.call_tool(tool, {"query": "relay"})
            except Exception as exc:  # noqa: BLE001 - counted, the benchmark reports what failed
                errors.append(repr(exc))
                return
            if result.is_error:
                errors.append(str(result.content[0]))
                return
            latencies.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(calls):
                group.start_soon(one)
        wall = time.perf_counter() - began
    return latencies, len(errors), wall, errors[0] if errors else None


async def run(calls: int, rounds: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="mcpfed-bench-load-"))
    with peer_process(home, "srv", "--notes", str(NOTES)) as srv_url, peer_process(home, "front", "--peer", srv_url) as front_url:
        async with Client(front_url) as client:  # wait until front has learned srv's tools
            with anyio.fail_after(20):
                while "srv__search_notes" not in {t.name for t in (await client.list_tools()).tools}:
                    await anyio.sleep(0.1)
        results: dict[str, list[tuple[list[float], int, float, str | None]]] = {"direct": [], "one hop": []}
        for _ in range(rounds):  # alternate, so drift in machine load hits both alike
            results["direct"].append(await burst(srv_url, "search_notes", calls))
            results["one hop"].append(await burst(front_url, "srv__search_notes", calls))
    print(f"\n{calls} concurrent search_notes calls, one SDK session each batch, {rounds} rounds (loopback, 2 processes)")
    print(f"{'variant':<12}{'errors':>8}{'p50 ms':>10}{'p99 ms':>10}{'wall s':>9}{'p50 ×':>8}{'p99 ×':>8}{'wall ×':>8}")
    base = _summary(results["direct"])
    for label, runs in results.items():
        errors, p50, p99, wall = _summary(runs)
        print(f"{label:<12}{errors:>8}{p50:>10.1f}{p99:>10.1f}{wall:>9.2f}{p50 / base[1]:>7.2f}×{p99 / base[2]:>7.2f}×{wall / base[3]:>7.2f}×")
        first_error = next((r[3] for r in runs if r[3]), None)
        if first_error:
            print(f"  first error ({label}): {first_error[:200]}")


def _summary(runs: list[tuple[list[float], int, float, str | None]]) -> tuple[int, float, float, float]:
    samples = [ms for run in runs for ms in run[0]] or [float("nan")]
    return sum(r[1] for r in runs), statistics.median(samples), percentile(samples, 0.99), statistics.median(r[2] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    anyio.run(run, args.calls, args.rounds)


if __name__ == "__main__":
    main()
