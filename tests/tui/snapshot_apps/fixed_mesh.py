"""The main screen fed a fixed, small mesh: no network, a fixed clock, UTC.

Used by the snapshot tests (and handy to look at: `python tests/tui/snapshot_apps/fixed_mesh.py`).
Four peers besides the watched one, in every status and via every route,
and a few calls: a finished chat, a two-call workflow, a failed call, and
one still running.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC

from federation import CallEvent, CallFinished, CallStarted, PeerRow
from federation.card import Load, ModelSummary, PeerCard, ToolSummary
from tui.app import MeshApp
from tui.asking import Answer, Asker
from tui.feed import ReplayFeed
from tui.wire import Connected, FeedItem

NOW = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC

GEMMA = ModelSummary(
    name="gemma-3-270m", architecture="gemma3", quantization="Q4_K_M", size_bytes=253_000_000, sha256="ab" * 32, n_ctx=4096
)


def _card(peer_id: str, name: str, models: Iterable[ModelSummary] = ()) -> PeerCard:
    return PeerCard(
        id=peer_id,
        name=name,
        pubkey="",
        endpoints=["http://127.0.0.1:8801/mcp"],
        models=list(models),
        tools=[ToolSummary(name=t) for t in ("generate", "chat", "embed", "model_info")],
        load=Load(),
        issued_at=NOW,
    )


SELF = _card("atl4sq2k5m7n3p6r", "atlas", [GEMMA])


def _peer(peer_id: str, name: str, via: str, status: str, models: tuple[str, ...], **figures: float) -> PeerRow:
    return PeerRow(
        id=peer_id,
        name=name,
        via=via,
        url=f"http://127.0.0.1:{8802 + len(name)}/mcp",
        status=status,  # type: ignore[arg-type]
        models=models,
        tools=4,
        last_seen=NOW - 1,
        **figures,  # type: ignore[arg-type]
    )


PEERS = (
    _peer("b0re4l1sxq2w3e4r", "borealis", "mdns", "up", ("gemma-3-270m",), latency_ms=2.1, calls_served=12, in_flight=1),
    _peer("c1rrusz9y8x7w6v5", "cirrus", "relay", "suspect", ("qwen2.5-0.5b",), latency_ms=48.0, calls_served=3),
    _peer("dyn4mo5t6u7v8w9x", "dynamo", "static", "dead", (), calls_served=0),
    _peer("eo5w1nd2c3v4b5n6", "eowind", "mdns", "up", ("llama-3.2-1b",), latency_ms=3.4, calls_served=7),
)


def _call(kind: str, tool: str, at: float, caller: str | None, callee: str, trace: str | None, **rest: object) -> CallEvent:
    model = CallFinished if kind == "call_finished" else CallStarted
    return model(tool=tool, trace_id=trace, caller=caller, callee=callee, at=at, **rest)  # type: ignore[arg-type]


ATLAS, BOREALIS, CIRRUS, EOWIND = SELF.id, PEERS[0].id, PEERS[1].id, PEERS[3].id

ITEMS: tuple[FeedItem, ...] = (
    Connected(card=SELF, peers=PEERS, calls_served=41),
    _call("call_started", "chat", NOW - 30, None, ATLAS, "t1"),
    _call("call_finished", "chat", NOW - 29, None, ATLAS, "t1", ms=812.0, outcome="ok", tokens_in=12, tokens_out=40),
    _call("call_started", "mesh_fan_out", NOW - 20, None, ATLAS, "t2"),
    _call("call_started", "chat", NOW - 20, ATLAS, BOREALIS, "t2"),
    _call("call_finished", "chat", NOW - 19, ATLAS, BOREALIS, "t2", ms=655.0, outcome="ok", tokens_in=9, tokens_out=31),
    _call("call_started", "chat", NOW - 20, ATLAS, EOWIND, "t2"),
    _call("call_finished", "chat", NOW - 18, ATLAS, EOWIND, "t2", ms=1480.0, outcome="ok", tokens_in=9, tokens_out=52),
    _call("call_finished", "mesh_fan_out", NOW - 18, None, ATLAS, "t2", ms=1502.0, outcome="ok"),
    _call("call_started", "generate", NOW - 10, EOWIND, CIRRUS, "t3"),
    _call("call_finished", "generate", NOW - 5, EOWIND, CIRRUS, "t3", ms=5000.0, outcome="error", error="peer cirrus timed out"),
    _call("call_started", "chat", NOW - 1, ATLAS, BOREALIS, "t4"),
)


class CannedAsker:
    """Streams a fixed answer, word by word."""

    ANSWER = "mDNS lets peers on one network find each other by name, with no server to set up."

    async def ask(self, prompt: str, on_text, *, trace_id: str) -> Answer:  # type: ignore[no-untyped-def]
        for word in self.ANSWER.split(" "):
            await on_text(word + " ")
        return Answer(text=self.ANSWER, tool="chat", trace_id=trace_id)


def make_app(items: tuple[FeedItem, ...] = ITEMS, asker: Asker | None = None) -> MeshApp:
    trace_ids = (f"{n:08x}{0:024x}" for n in itertools.count(0xA11CE))
    return MeshApp(
        ReplayFeed(items), asker or CannedAsker(), url="http://127.0.0.1:8801", clock=lambda: NOW, tz=UTC, trace_ids=lambda: next(trace_ids)
    )


app = make_app()

if __name__ == "__main__":
    app.run()
