"""What serving a model over MCP costs: raw llama-cpp-python tok/s vs `generate` through a peer.

Same process, same GGUF, same context size, threads and GPU layers, same prompt,
greedy sampling and the same token count; each round runs both sides back to
back, in alternating order, and the figure is the median of per-round ratios,
so a busy machine slows both sides alike. The raw side streams
`Llama.create_completion(stream=True)`, as a llama-cpp-python user would;
the peer side is a real SDK client on a long-lived Streamable HTTP session
receiving every token as a progress notification. tok/s is completion tokens
over wall time (prompt evaluation included) on both sides.

    python -m bench.model [--tokens 128] [--rounds 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from federation import Node, PeerSettings
from federation.client import call_tool, connect

PROMPT = "The history of the printing press begins"


def raw_round(llama: Any, tokens: int) -> tuple[str, float]:
    """(text, seconds) of one streamed completion straight from llama-cpp-python.

    The cache is reset first, as the peer does for every request: both sides evaluate the whole prompt.
    """
    llama.reset()
    started = time.perf_counter()
    pieces = [chunk["choices"][0]["text"] for chunk in llama.create_completion(PROMPT, max_tokens=tokens, temperature=0.0, stream=True)]
    return "".join(pieces), time.perf_counter() - started


async def run(tokens: int, rounds: int) -> None:
    import llama_cpp

    home = Path(tempfile.mkdtemp(prefix="mcpfed-bench-"))
    settings = PeerSettings(name="bench", port=0, home=home, model="default", n_ctx=2048)
    raw_rates: list[float] = []
    peer_rates: list[float] = []
    async with Node(settings) as node:
        await node.wait_ready()
        engine = node.engine
        assert engine is not None
        llama = await anyio.to_thread.run_sync(lambda: llama_cpp.Llama(**engine.llama_settings()))
        arguments = {"prompt": PROMPT, "max_tokens": tokens, "temperature": 0.0}
        streamed: list[str] = []

        async def collect(text: str) -> None:
            streamed.append(text)

        async with connect(node.mcp_url) as client:
            await call_tool(client, "generate", arguments | {"max_tokens": 8})  # warm both sides once
            await anyio.to_thread.run_sync(raw_round, llama, 8)
            for round_number in range(rounds):
                order = ("raw", "peer") if round_number % 2 == 0 else ("peer", "raw")  # ABBA: drift hits both
                rates: dict[str, float] = {}
                for side in order:
                    if side == "raw":
                        raw_text, seconds = await anyio.to_thread.run_sync(raw_round, llama, tokens)
                    else:
                        streamed.clear()
                        started = time.perf_counter()
                        result = await call_tool(client, "generate", arguments, on_text=collect)
                        seconds = time.perf_counter() - started
                    rates[side] = tokens / seconds
                content = result.structured_content or {}
                if content["usage"]["completion_tokens"] != tokens or content["text"] != raw_text or "".join(streamed) != raw_text:
                    raise SystemExit("raw and peer generated different text: the comparison would be unfair")
                raw_rates.append(rates["raw"])
                peer_rates.append(rates["peer"])
                print(
                    f"round {round_number + 1}: raw {rates['raw']:6.1f} tok/s   peer {rates['peer']:6.1f} tok/s"
                    f"   ratio {rates['peer'] / rates['raw']:.3f}   ({len(streamed)} progress notifications)",
                    flush=True,
                )
        llama.close()
    raw, peer = statistics.median(raw_rates), statistics.median(peer_rates)
    ratios = sorted(p / r for p, r in zip(peer_rates, raw_rates))
    print(f"\nModel serving: {engine.info.name} {engine.info.quantization}, {tokens} tokens, greedy, "
          f"{engine.n_threads} threads, {engine.n_gpu_layers} GPU layers, {rounds} rounds (medians)")
    print(f"{'variant':<52}{'tok/s':>8}{'× raw':>9}")
    print(f"{'raw llama-cpp-python create_completion(stream=True)':<52}{raw:>8.1f}{1.0:>8.2f}×")
    print(f"{'generate through the MCP peer (progress streaming)':<52}{peer:>8.1f}{statistics.median(ratios):>8.2f}×")
    print(f"(× raw is the median of per-round ratios; they ranged {ratios[0]:.2f}–{ratios[-1]:.2f})")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    anyio.run(run, args.tokens, args.rounds)


if __name__ == "__main__":
    main()
