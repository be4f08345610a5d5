"""What a hop through the mesh costs: a trivial tool called directly with the MCP SDK,
through one peer, through two peers, through the Mesh API (client-side routing), and
through FastMCP's proxy. Same run, same echo tool, long-lived sessions. The variants take
turns for `--rounds` rounds, so a machine busy with other work for part of the run slows
them all alike instead of the one measured at the time.

Two tables. In one process: every party shares one event loop, so each call pays every
party's work in turn (and, after answering, their books); it isolates our code's cost.
In separate processes, as a mesh is deployed: a bare SDK notes server, a notes peer
(`mcpfed serve --notes`), a peer in front of it and one in front of that, each its own
process, the client in this one; the same `search_notes` call direct, one hop and two.

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
from bench.load import NOTES, child_process, peer_process
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


async def run_processes(calls: int, rounds: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="mcpfed-bench-"))
    query = {"query": "relay"}
    with (
        child_process(home / "bare.log", "-m", "bench._bare", str(NOTES)) as bare_url,
        peer_process(home, "srv", "--notes", str(NOTES)) as srv_url,
        peer_process(home, "front", "--peer", srv_url) as front_url,
        peer_process(home, "outer", "--peer", front_url) as outer_url,
    ):
        variants: list[tuple[str, str, str, dict[str, Any]]] = [
            ("direct: SDK client -> bare MCPServer", bare_url, "search_notes", query),
            ("direct: SDK client -> notes peer", srv_url, "search_notes", query),
            ("one hop: -> front -> srv__search_notes", front_url, "srv__search_notes", query),
            ("two hops: -> outer -> front -> srv", outer_url, "mesh_call", {"peer": "front", "tool": "srv__search_notes", "arguments": query}),
        ]
        samples: dict[str, list[float]] = {}
        async with AsyncExitStack() as stack:
            calls_of: dict[str, Callable[[], Awaitable[Any]]] = {}
            for label, url, tool, arguments in variants:
                client = await stack.enter_async_context(Client(url))
                await _wait_for_tool(client, tool)
                calls_of[label] = partial(client.call_tool, tool, arguments)
            for _ in range(rounds):
                for label, call in calls_of.items():
                    samples.setdefault(label, []).extend(await time_calls(call, calls))
    title = f"search_notes, {calls} sequential calls each in {rounds} rounds, every party its own process (loopback)"
    print_table(title, list(samples.items()), "direct: SDK client -> bare MCPServer")
    print_table("the same, against the notes peer's own tool", list(samples.items()), "direct: SDK client -> notes peer")


async def _wait_for_tool(client: Client, name: str) -> None:
    """Until the peer behind `client` lists `name` (a peer learns its peers' tools moments after it starts)."""
    with anyio.fail_after(20):
        while name not in {t.name for t in (await client.list_tools()).tools}:
            await anyio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(run, args.calls, args.rounds)
    anyio.run(run_processes, args.calls, args.rounds)


if __name__ == "__main__":
    main()
