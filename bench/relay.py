"""Relay overhead, measured in one run: direct calls vs the same calls through a relay.

    python -m bench.relay [--calls 200] [--tokens 128] [--rounds 3]

1. A trivial `echo` tool over one long-lived SDK session: p50/p99 latency
   direct (`<peer>/mcp`) and relayed (`<relay>/p/<id>/mcp`), in alternating
   batches so drift hits both alike. Goal: relayed p50 <= 2x direct.
2. A streamed generation (temperature 0, same prompt): client-side tok/s
   direct vs relayed, alternating rounds.
3. Streaming capacity without the model: a tool that sends N progress
   notifications as fast as it can; notifications/s direct vs relayed. As
   long as the relayed rate is far above a model's token rate, the relay
   cannot be what limits a generation (and unlike 2 it does not swing with
   how busy the CPU is with other work).

Relay, peer and client share one process and event loop here (the worst
case: one core does all three jobs); on real hosts the relay's work runs
elsewhere.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer

from federation.discovery.relay import relayed_url
from federation.membership import auth_headers
from federation.node import Node
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from federation.toolhost import HostedServer

_SECRET = "bench-mesh-secret-0123456789"
_MESH = "benchmesh01"


def echo_server() -> MCPServer:
    server = MCPServer("echo")

    @server.tool()
    def echo(text: str) -> str:
        """Return `text` unchanged."""
        return text

    @server.tool()
    async def tick(n: int, ctx: Context) -> int:
        """Send `n` progress notifications, as a model sends tokens, then return `n`."""
        for i in range(n):
            await ctx.report_progress(i + 1, n, f" token{i}")
        return n

    return server


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _echo_batch(client: Client, n: int, into: list[float]) -> None:
    for i in range(n):
        started = time.perf_counter()
        result = await client.call_tool("echo", {"text": f"ping {i}"})
        into.append((time.perf_counter() - started) * 1000)
        assert not result.is_error


async def _streamed(client: Client, tool: str, arguments: dict[str, Any]) -> tuple[int, float, dict[str, Any]]:
    """Call a streaming tool: (progress notifications seen, seconds, structured result)."""
    seen = 0

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        nonlocal seen
        seen += 1

    started = time.perf_counter()
    result = await client.call_tool(tool, arguments, progress_callback=on_progress)
    return seen, time.perf_counter() - started, result.structured_content or {}


async def _generate(client: Client, tokens: int) -> float:
    arguments = {"prompt": "The history of the printing press", "max_tokens": tokens, "temperature": 0.0, "seed": 1}
    seen, elapsed, result = await _streamed(client, "generate", arguments)
    assert seen > 0, "no progress notifications arrived"
    return int(result["usage"]["completion_tokens"]) / elapsed


async def _tick(client: Client, n: int) -> float:
    seen, elapsed, _ = await _streamed(client, "tick", {"n": n})
    assert seen == n, f"{seen} of {n} notifications arrived"
    return n / elapsed


async def run(calls: int, tokens: int, rounds: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="mcpfed-bench-relay-"))
    mesh: dict[str, Any] = {"mesh": _MESH, "mesh_secret": _SECRET}
    async with Relay(RelaySettings(port=0, home=home / "relay", **mesh)) as relay:
        settings = PeerSettings(port=0, home=home / "peer", model="default", n_ctx=2048, relays=[relay.url], **mesh)
        async with Node(settings) as node:
            await node.tools.add_provider(HostedServer(echo_server()))
            await node.wait_ready()
            with anyio.fail_after(10):
                while node.peer_id not in relay.peer_ids:
                    await anyio.sleep(0.02)
            urls = {"direct": node.mcp_url, "relayed": relayed_url(relay.url, node.peer_id)}
            async with httpx2.AsyncClient(headers=auth_headers(settings), timeout=httpx2.Timeout(30, read=300)) as http:
                async with Client(streamable_http_client(urls["direct"], http_client=http)) as direct, Client(
                    streamable_http_client(urls["relayed"], http_client=http)
                ) as relayed:
                    clients = {"direct": direct, "relayed": relayed}
                    latencies: dict[str, list[float]] = {"direct": [], "relayed": []}
                    for client in clients.values():  # warm-up: connections, caches, JIT-free but still
                        await _echo_batch(client, 20, [])
                    batch = 50
                    for _ in range(max(1, calls // batch)):
                        for path, client in clients.items():
                            await _echo_batch(client, batch, latencies[path])
                    ticks: dict[str, list[float]] = {"direct": [], "relayed": []}
                    for _ in range(rounds):
                        for path, client in clients.items():
                            ticks[path].append(await _tick(client, 500))
                    rates: dict[str, list[float]] = {"direct": [], "relayed": []}
                    await _generate(direct, 8)  # warm the model
                    for _ in range(rounds):
                        for path, client in clients.items():
                            rates[path].append(await _generate(client, tokens))
    _report(latencies, rates, tokens)
    _report_rates("progress notifications, 500 per call, no model", "notifications/s", ticks)


def _report(latencies: dict[str, list[float]], rates: dict[str, list[float]], tokens: int) -> None:
    p50 = {k: statistics.median(v) for k, v in latencies.items()}
    p99 = {k: _percentile(v, 0.99) for k, v in latencies.items()}
    n = len(latencies["direct"])
    print(f"echo tool, {n} calls per path, one long-lived session each")
    for path in ("direct", "relayed"):
        print(f"  {path:8} p50 {p50[path]:6.2f} ms   p99 {p99[path]:6.2f} ms")
    print(f"  ratio    p50 {p50['relayed'] / p50['direct']:.2f}x   p99 {p99['relayed'] / p99['direct']:.2f}x   (goal p50 <= 2.00x)")
    _report_rates(f"generate {tokens} tokens, streamed", "tok/s", rates)


def _report_rates(title: str, unit: str, rates: dict[str, list[float]]) -> None:
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{title}: median of {len(rates['direct'])} alternating rounds")
    for path in ("direct", "relayed"):
        print(f"  {path:8} {median[path]:8.1f} {unit}  ({', '.join(f'{r:.1f}' for r in rates[path])})")
    print(f"  ratio    {median['relayed'] / median['direct']:.3f}x relayed/direct")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="echo calls per path (in batches of 50)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per generation")
    parser.add_argument("--rounds", type=int, default=3, help="generation rounds per path")
    args = parser.parse_args()
    anyio.run(run, args.calls, args.tokens, args.rounds)


if __name__ == "__main__":
    main()
