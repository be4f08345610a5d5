"""What a hop through the mesh costs: a trivial tool called directly with the MCP SDK,
through one peer, through two peers, through the Mesh API (client-side routing), and
through FastMCP's proxy. Same run, same echo tool, long-lived sessions.

    python -m bench.hops [--calls 200]
"""

from __future__ import annotations

import argparse
import tempfile
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


async def run(calls: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="mcpfed-bench-"))
    rows: list[tuple[str, list[float]]] = []

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
            for label, url, tool, arguments in variants:
                async with Client(url) as client:
                    rows.append((label, await time_calls(lambda: client.call_tool(tool, arguments), calls)))  # noqa: B023 - awaited in this iteration
            async with Mesh.connect(name="bench-script", home=home, mdns="off") as mesh:
                await mesh.node.add_peer(alice.mcp_url)
                await mesh.wait_for_peers(1)
                rows.append(("Mesh API: client-side route -> alice", await time_calls(lambda: mesh.call("alice", "echo", {"text": "x"}), calls)))
    print_table(f"Trivial tool, {calls} sequential calls each, loopback, long-lived sessions", rows, "direct: SDK client -> bare MCPServer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    anyio.run(run, parser.parse_args().calls)


if __name__ == "__main__":
    main()
