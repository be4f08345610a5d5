"""What serving a model over MCP costs: raw llama-cpp-python tok/s vs `generate` through a peer.

Same process, same GGUF, same context size, threads and GPU layers, same prompt,
greedy sampling and the same token count (the texts are checked equal). Each
round runs every variant back to back, each leading in turn, and the figure is
the median of per-round ratios, so a busy machine slows all of them alike. The
raw side streams `Llama.create_completion(stream=True)`, as a llama-cpp-python
user would; the peer side is a real SDK client on a long-lived Streamable HTTP
session, once taking only the final result and once receiving the text as
progress notifications. tok/s is completion tokens over wall time, prompt
evaluation included. Other load on the machine only ever slows a round down,
so the headline is best against best; the median of per-round ratios is shown
beside it.

    python -m bench.model [--tokens 64] [--rounds 16]
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

from federation import Node, PeerSettings, call_tool, connect

PROMPT = "The history of the printing press begins"


def raw_round(llama: Any, tokens: int) -> tuple[str, float]:
    """(text, seconds) of one streamed completion straight from llama-cpp-python.

    The cache is reset first, as the peer does for every request: both sides evaluate the whole prompt.
    """
    llama.reset()
    started = time.perf_counter()
    pieces = [chunk["choices"][0]["text"] for chunk in llama.create_completion(PROMPT, max_tokens=tokens, temperature=0.0, stream=True)]
    return "".join(pieces), time.perf_counter() - started


RAW = "raw llama-cpp-python create_completion(stream=True)"
PLAIN = "generate through the peer, final result only"
STREAMED = "generate through the peer, streaming progress"


async def run(tokens: int, rounds: int) -> None:
    import llama_cpp

    home = Path(tempfile.mkdtemp(prefix="mcpfed-bench-"))
    settings = PeerSettings(name="bench", port=0, home=home, model="default", n_ctx=2048)
    rates: dict[str, list[float]] = {RAW: [], PLAIN: [], STREAMED: []}
    ratios: dict[str, list[float]] = {PLAIN: [], STREAMED: []}
    async with Node(settings) as node:
        await node.wait_ready()
        engine = node.engine
        assert engine is not None
        llama = await anyio.to_thread.run_sync(lambda: llama_cpp.Llama(**engine.llama_settings()))
        arguments = {"prompt": PROMPT, "max_tokens": tokens, "temperature": 0.0}
        notifications: list[str] = []

        async def collect(text: str) -> None:
            notifications.append(text)

        async with connect(node.mcp_url) as client:

            async def through_peer(on_text: Any) -> tuple[str, float]:
                started = time.perf_counter()
                if on_text is None:  # no progress token: the peer sends no notifications
                    result = await client.call_tool("generate", arguments)
                else:
                    result = await call_tool(client, "generate", arguments, on_text=on_text)
                seconds = time.perf_counter() - started
                content = result.structured_content or {}
                if content["usage"]["completion_tokens"] != tokens:
                    raise SystemExit(f"the peer made {content['usage']['completion_tokens']} tokens, not {tokens}")
                return content["text"], seconds

            async def streamed() -> tuple[str, float]:
                notifications.clear()
                text, seconds = await through_peer(collect)
                if "".join(notifications) != text:
                    raise SystemExit("the progress notifications do not join to the final text")
                return text, seconds

            variants = {
                RAW: lambda: anyio.to_thread.run_sync(raw_round, llama, tokens),
                PLAIN: lambda: through_peer(None),
                STREAMED: streamed,
            }
            await call_tool(client, "generate", arguments | {"max_tokens": 8})  # warm both sides once
            await anyio.to_thread.run_sync(raw_round, llama, 8)
            for round_number in range(rounds):
                names = list(variants)
                order = names[round_number % 3 :] + names[: round_number % 3]  # each variant leads in turn
                texts: dict[str, str] = {}
                this_round: dict[str, float] = {}
                for name in order:
                    texts[name], seconds = await variants[name]()
                    this_round[name] = tokens / seconds
                if len(set(texts.values())) != 1:
                    raise SystemExit("raw and peer generated different text: the comparison would be unfair")
                for name, rate in this_round.items():
                    rates[name].append(rate)
                for name in ratios:
                    ratios[name].append(this_round[name] / this_round[RAW])
                print(
                    f"round {round_number + 1}: raw {this_round[RAW]:5.1f}   peer {this_round[PLAIN]:5.1f}"
                    f"   peer streaming {this_round[STREAMED]:5.1f} tok/s ({len(notifications)} notifications)",
                    flush=True,
                )
        llama.close()
    print(f"\nModel serving: {engine.info.name} {engine.info.quantization}, {tokens} tokens, greedy, "
          f"{engine.n_threads} threads, {engine.n_gpu_layers} GPU layers, {rounds} rounds")
    print(f"{'variant':<50}{'best tok/s':>11}{'× raw':>7}{'median round':>14}{'range':>12}")
    best_raw = max(rates[RAW])
    print(f"{RAW:<50}{best_raw:>11.1f}{1.0:>6.2f}×")
    for name, measured in ratios.items():
        best = max(rates[name])
        print(f"{name:<50}{best:>11.1f}{best / best_raw:>6.2f}×{statistics.median(measured):>13.2f}×{min(measured):>6.2f}–{max(measured):.2f}")
    print("(best: the fastest of all rounds, as other load only ever slows a round down; median round: the median of")
    print(" per-round ratios, each round running all three back to back)")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args()
    anyio.run(run, args.tokens, args.rounds)


if __name__ == "__main__":
    main()
