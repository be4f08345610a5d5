"""What a big, busy mesh costs the TUI: CPU per redraw with 100 peers and 300 traces, against 3 peers.

    python -m bench.tui_redraw

Both runs drive the real app headless at 160×48 with the same stream of call
events (one per redraw window, as a busy mesh would send), from a fixed feed
(no network), and count the process CPU time spent per redraw. Prints both
and their ratio (how much more a hundred-peer mesh costs than a small one),
and the CPU a quiet hundred-peer mesh costs per second (nothing is polled).
"""

from __future__ import annotations

import time

import anyio

from federation import CallFinished, PeerCard, PeerRow
from tui.app import FLUSH_SECONDS, MeshApp
from tui.asking import Answer, TextCallback
from tui.feed import ReplayFeed
from tui.wire import Connected, FeedItem

REDRAWS = 40
SIZE = (160, 48)


class _NoAsker:
    async def ask(self, prompt: str, on_text: TextCallback, *, trace_id: str) -> Answer:
        raise NotImplementedError


def _call(n: int, peers: tuple[PeerRow, ...]) -> CallFinished:
    caller, callee = peers[n % len(peers)], peers[(n + 1) % len(peers)]
    return CallFinished(tool="chat", trace_id=f"t{n}", caller=caller.id, callee=callee.id, ms=120.0, outcome="ok", tokens_in=9, tokens_out=30, at=time.time())


async def cpu_ms(n_peers: int, n_traces: int, *, events: bool) -> float:
    """CPU ms per redraw window (one event each), or per quiet second when `events` is False."""
    card = PeerCard(id="self0000self0000", name="self", pubkey="")
    peers = tuple(PeerRow(id=f"p{i:015d}", name=f"peer{i:03d}", via="mdns", models=("gemma-3-270m",), latency_ms=2.0) for i in range(n_peers))
    history: list[FeedItem] = [Connected(card=card, peers=peers), *(_call(n, peers) for n in range(n_traces))]
    app = MeshApp(ReplayFeed(history), _NoAsker(), url="http://bench")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(1.0)
        started = time.process_time()
        if not events:
            await pilot.pause(3.0)
            return (time.process_time() - started) * 1000 / 3.0
        for n in range(REDRAWS):
            app.ingest(_call(n_traces + n, peers))
            await pilot.pause(FLUSH_SECONDS * 1.5)
        return (time.process_time() - started) * 1000 / REDRAWS


async def main() -> None:
    small = await cpu_ms(3, 10, events=True)
    big = await cpu_ms(100, 300, events=True)
    quiet = await cpu_ms(100, 0, events=False)
    print(f"CPU per redraw, 3 peers / 10 traces:    {small:6.1f} ms")
    print(f"CPU per redraw, 100 peers / 300 traces: {big:6.1f} ms")
    print(f"ratio (100 peers vs 3): {big / small:.2f}x; redraws are capped at {1 / FLUSH_SECONDS:.0f}/s")
    print(f"quiet 100-peer mesh: {quiet:.1f} ms CPU per second")


if __name__ == "__main__":
    anyio.run(main)
