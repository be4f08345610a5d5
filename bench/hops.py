"""What a hop through the mesh costs: a trivial tool called directly with the MCP SDK,
through one peer, through two peers, through the Mesh API (client-side routing), and
through FastMCP's proxy. Same run, same echo tool, long-lived sessions. The variants take
turns for `--rounds` rounds, so a machine busy with other work for part of the run slows
them all alike instead of the one measured at the time.

    python -m bench.hops [--calls 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from bench._util import print_table, time_calls
from federation import Mesh, Node, PeerSettings
from federation.listen import serve_app
from federation.toolhost import HostedServer
from servers.echo import build_server as echo_server


async def wait_for_tool(node: Node, name: str) -> None:
    with anyio.fail_after(10):
        while name not in {t.name for t in node.tools.tools}:
            await anyio.sleep(0.02)


async def run(calls: int, rounds: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="mcpfed-bench-"))
    samples: dict[str, list[float]] = {}

    def settings(name: str) -> PeerSettings:
        # mDNS off: the peers are introduced by URL, and on a shared machine other processes' peers on loopback
        # mDNS would be found, fetched and verified inside the timed loop.
        return PeerSettings(name=name, port=0, model=None, home=home / name, mdns="off")

    async with (
        serve_app(echo_server().streamable_http_app()) as bare_url,
        Node(settings("alice")) as alice,
        Node(settings("bob")) as bob,
        Node(settings("carol")) as carol,
    ):
        await alice.tools.add_provider(HostedServer(echo_server()))
        await bob.add_peer(alice.mcp_url)
        await carol.add_peer(bob.mcp_url)
        await wait_for_tool(bob, "alice__echo")
        await wait_for_tool(carol, "mesh_call")
        from fastmcp.server import create_proxy

        proxy = create_proxy(bare_url + "/mcp")
        async with serve_app(proxy.http_app(path="/mcp")) as proxy_url:
            variants: list[tuple[str, str, str, dict[str, Any]]] = [
                ("direct: SDK client -> bare MCPServer", bare_url + "/mcp", "echo", {"text": "x"}),
                ("direct: SDK client -> peer's own tool", alice.mcp_url, "echo", {"text": "x"}),
                ("one hop: -> bob -> alice__echo", bob.mcp_url, "alice__echo", {"text": "x"}),
                ("two hops: -> carol -> bob -> alice", carol.mcp_url, "mesh_call", {"peer": "bob", "tool": "alice__echo", "arguments": {"text": "x"}}),
                ("FastMCP 4.1.6 proxy -> bare MCPServer", proxy_url + "/mcp", "echo", {"text": "x"}),
            ]
            async with AsyncExitStack() as stack:
                calls_of: dict[str, Callable[[], Awaitable[Any]]] = {}
                for label, url, tool, arguments in variants:
                    client = await stack.enter_async_context(Client(url))
                    calls_of[label] = partial(client.call_tool, tool, arguments)
                mesh = await stack.enter_async_context(Mesh.connect(name="bench-script", home=home, mdns="off"))
                await mesh.node.add_peer(alice.mcp_url)
                await mesh.wait_for_peers(1)
                calls_of["Mesh API: client-side route -> alice"] = lambda: mesh.call("alice", "echo", {"text": "x"})
                for _ in range(rounds):
                    for label, call in calls_of.items():
                        samples.setdefault(label, []).extend(await time_calls(call, calls))
    title = f"Trivial tool, {calls} sequential calls each in {rounds} rounds, loopback, long-lived sessions"
    print_table(title, list(samples.items()), "direct: SDK client -> bare MCPServer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(run, args.calls, args.rounds)


if __name__ == "__main__":
    main()
