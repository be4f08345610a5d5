"""Regenerate docs/tui.svg: the TUI watching a real three-peer mesh on loopback.

    python docs/tui_screenshot.py

Three real peers: `atlas` serves the embedded model, `borealis` and `cirrus`
are light peers in atlas' table. The user asks a question in the prompt box;
once the answer has streamed in, borealis and cirrus each call atlas'
`generate` within one trace (carrying the trace metadata a forwarding peer
sends), and the screenshot is taken while their edges are still drawn.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import anyio
import httpx

from federation.client import call_tool, connect
from federation.const import TRACE_META_KEY
from federation.node import Node
from federation.settings import PeerSettings
from tui.address import NodeAddress
from tui.app import MeshApp
from tui.asking import MeshAsker
from tui.feed import HttpFeed
from tui.widgets.answer_pane import AnswerPane
from tui.widgets.call_log import CallLog

OUT = Path(__file__).parent / "tui.svg"


async def ping_ms(node: Node) -> float:
    async with httpx.AsyncClient(timeout=5) as http:
        started = time.perf_counter()
        (await http.get(node.url + "/health")).raise_for_status()
        return (time.perf_counter() - started) * 1000


async def ask_as(caller: Node, callee: Node, trace_id: str, prompt: str) -> None:
    meta = {TRACE_META_KEY: {"trace_id": trace_id, "span_id": uuid.uuid4().hex[:16], "caller": caller.peer_id}}
    async with connect(callee.mcp_url) as client:
        await call_tool(client, "generate", {"prompt": prompt, "max_tokens": 24, "seed": 7}, meta=meta)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:

        def settings(name: str, model: str | None = None) -> PeerSettings:
            return PeerSettings(name=name, port=0, home=Path(tmp) / name, model=model, n_ctx=2048)

        async with Node(settings("atlas", "default")) as atlas, Node(settings("borealis")) as borealis, Node(settings("cirrus")) as cirrus:
            await atlas.wait_ready()
            for peer in (borealis, cirrus):
                atlas.peers.admit(peer.card(), "static", peer.mcp_url)
                atlas.peers.observe(peer.peer_id, latency_ms=await ping_ms(peer))
            address = NodeAddress.parse(atlas.url)
            app = MeshApp(HttpFeed(address), MeshAsker(address.mcp, max_tokens=40), url=address.base)
            async with app.run_test(size=(140, 36)) as pilot:
                while app.connection.phase != "connected":
                    await pilot.pause(0.1)
                await pilot.press("slash", *"What is a mesh network?", "enter")
                pane = app.query_one(AnswerPane)
                with anyio.fail_after(300):
                    while pane.status.startswith("asking") or not pane.status:
                        await pilot.pause(0.2)
                trace_id = uuid.uuid4().hex  # then a workflow, shot while its edges still glow
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask_as, borealis, atlas, trace_id, "The mesh is")
                    tg.start_soon(ask_as, cirrus, atlas, trace_id, "A peer is")
                log = app.query_one(CallLog)
                log.focus()
                log.move_cursor(next(n for n in log.root.children if n.data is not None and n.data.info.trace_id == trace_id))
                await pilot.press("enter")  # expand the two-call trace
                await pilot.pause(0.3)
                app.save_screenshot(filename=OUT.name, path=str(OUT.parent))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    anyio.run(main)
