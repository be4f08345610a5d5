"""Listing the mesh: warm `resources/list` and `prompts/list` on a peer that knows 10 peers vs on one peer alone.

Every peer serves the example notes (`ai://<peer>/<path>`) and two prompts.
The baseline is one such peer listing its own; the other row lists, on a
peer that knows all ten, everything the ten offer (every page, default page
size). The mesh view is kept up to date by change notifications, so a list
is answered from it, not by asking ten peers.

    python -m bench.protocol [--calls 200] [--peers 10]
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.server.mcpserver import MCPServer

from bench._util import print_table, time_calls
from federation.node import Node
from federation.settings import PeerSettings

NOTES = Path(__file__).resolve().parents[1] / "examples" / "notes"


def _prompts() -> MCPServer:
    server = MCPServer("prompts", log_level="WARNING")

    @server.prompt()
    def summarize(text: str) -> str:
        """Summarize a text."""
        return f"Summarize: {text}"

    @server.prompt()
    def ask(question: str) -> str:
        """Ask one question."""
        return f"Answer: {question}"

    return server


async def _every_page(client: Client, method: str, field: str) -> int:
    count, cursor = 0, None
    while True:
        page = await getattr(client, method)(cursor=cursor, cache_mode="bypass")
        count += len(getattr(page, field))
        cursor = page.next_cursor
        if not cursor:
            return count


async def run(calls: int, peers: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="mcpfed-bench-"))

    def settings(name: str, **more: Any) -> PeerSettings:
        return PeerSettings(name=name, port=0, home=home / name, model=None, mdns="off", health_interval=60.0, **more)

    async with AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(Node(settings(f"peer{i}", notes=NOTES))) for i in range(peers)]
        for node in nodes:
            await node.content.add_server(_prompts())
        front = await stack.enter_async_context(Node(settings("front")))
        for node in nodes:
            await front.add_peer(node.mcp_url)
        expected = sum(len(node.content.offers("resource")) for node in nodes)
        with anyio.fail_after(30):
            while len(front.content.offers("resource")) < expected:
                await anyio.sleep(0.05)
        alone = await stack.enter_async_context(Client(nodes[0].mcp_url, cache=None))
        mesh = await stack.enter_async_context(Client(front.mcp_url, cache=None))
        counts = {name: await _every_page(client, "list_resources", "resources") for name, client in (("alone", alone), ("mesh", mesh))}
        for method, field in (("list_resources", "resources"), ("list_prompts", "prompts")):
            rows = []
            for label, client in ((f"{method} on one peer", alone), (f"{method} across {peers} peers", mesh)):
                listing = partial(_every_page, client, method, field)
                rows.append((f"{label} ({await listing()} items)", await time_calls(listing, calls)))
            print_table(f"Warm {method.replace('list_', '')}/list, every page, {calls} calls", rows, baseline=rows[0][0])
        assert counts["mesh"] > counts["alone"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--peers", type=int, default=10)
    args = parser.parse_args()
    anyio.run(run, args.calls, args.peers)


if __name__ == "__main__":
    main()
