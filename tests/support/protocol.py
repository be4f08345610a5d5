"""The world of the protocol matrix: a serving peer and every path to it, each with a client per era.

srv serves notes (`ai://srv/<path>`), the `probe` server (tools that log,
stream progress and wait to be cancelled; a prompt with completions) and a
shared stdio child (`tests/servers/content_child.py`); it is attached to a
relay. The paths (`PATHS`) are the ways a client reaches srv: directly, one
hop (front knows srv), two hops (far knows only mid, mid knows srv), through
the relay (relayed knows srv only by its relayed URL) and the stdio gateway
(`mcpfed gateway`, a child process). Each path has an SDK client per era,
all opened once per module.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp.types as types
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer

from federation.discovery.relay import relayed_url
from federation.node import Node
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.routing import Router
from federation.settings import PeerSettings
from federation.toolhost import HostedServer
from servers.echo import build_server as echo_server
from tests.support.paths import NOTES, REPO
from tests.support.relay import AUTH, MESH, MESH_FIELDS, wait_attached
from tests.support.waiting import wait_until

PATHS = ["direct", "one_hop", "two_hops", "relay", "gateway"]
ERAS = {"2026-07-28": "auto", "2025-11-25": "legacy"}
PAGE_SIZE = 4
"""Small pages on every peer, so that listing the mesh's resources takes several cursors."""


@dataclass
class Probe:
    """What srv's probe server saw: which waits were cancelled."""

    cancelled: set[str] = field(default_factory=set)


def probe_server(probe: Probe) -> MCPServer:
    server = MCPServer("probe", version="0.1.0", log_level="WARNING")

    @server.tool()
    async def noisy(steps: int, ctx: Context) -> str:
        """Log a line and report progress at each step."""
        for step in range(1, steps + 1):
            await ctx.info(f"step {step}")
            await ctx.report_progress(step, steps, f"step {step}")
        return f"done {steps}"

    @server.tool()
    async def sleepy(tag: str) -> str:
        """Wait until cancelled (noted under `tag`)."""
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            probe.cancelled.add(tag)
            raise
        return tag

    @server.prompt()
    def greet(name: str) -> str:
        """Greet someone by name."""
        return f"Please greet {name} warmly."

    @server.completion()
    async def complete(ref: Any, argument: types.CompletionArgument, context: Any) -> types.Completion | None:
        if isinstance(ref, types.PromptReference) and argument.name == "name":
            return types.Completion(values=[n for n in ("alice", "albert", "bob") if n.startswith(argument.value)])
        return None

    return server


@dataclass
class Session:
    """One client on one path in one era, with what it heard besides answers."""

    client: Client
    logs: list[types.LoggingMessageNotificationParams] = field(default_factory=list)
    notices: list[Any] = field(default_factory=list)


@dataclass
class World:
    srv: Node
    probe: Probe
    sessions: dict[tuple[str, str], Session]
    """(path, era) -> session."""
    admin: Client
    """A modern client straight to srv, to change things there."""


def _settings(home: Path, name: str, **more: Any) -> PeerSettings:
    return PeerSettings(name=name, port=0, home=home / name, model=None, mdns="off", **MESH_FIELDS, **more)


def _gateway(home: Path, peer: str) -> StdioServerParameters:
    env = os.environ | {"MCPFED_MESH": MESH.id, "MCPFED_MESH_NAME": MESH.name, "MCPFED_MESH_SECRET": MESH.secret, "MCPFED_HOME": str(home)}
    return StdioServerParameters(command=sys.executable, args=["-m", "federation.cli", "gateway", "--mdns", "off", "--peer", peer], env=env, cwd=REPO)


async def _user_answers_blue(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    """The user behind every matrix client: answers any question (echo's `ask`) with "blue"."""
    return types.ElicitResult(action="accept", content={"answer": "blue"})


async def _open(stack: AsyncExitStack, target: str | StdioServerParameters, mode: str, errlog: Any) -> Session:
    session = Session(client=None)  # type: ignore[arg-type]

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        session.logs.append(params)

    async def on_message(message: Any) -> None:
        session.notices.append(message)

    if isinstance(target, str):
        transport: Any = streamable_http_client(target, http_client=await stack.enter_async_context(httpx2.AsyncClient(headers=AUTH, timeout=60)))
    else:
        transport = stdio_client(target, errlog=errlog)
    options: dict[str, Any] = {"log_level": "debug"} if mode == "auto" else {}
    session.client = await stack.enter_async_context(Client(transport, mode=mode, logging_callback=on_log, message_handler=on_message, elicitation_callback=_user_answers_blue, cache=None, **options))  # type: ignore[arg-type]
    return session


async def _knows(node: Node, *urls: str) -> None:
    for url in urls:
        await node.add_peer(url)
    await wait_until(lambda: node.service(Router).settled(), f"{node.name} listed its peers' tools", 15)
    node.content.page_size = PAGE_SIZE


@asynccontextmanager
async def protocol_world(home: Path) -> AsyncIterator[World]:
    async with AsyncExitStack() as stack:
        notes = home / "notes"
        shutil.copytree(NOTES, notes)
        relay = await stack.enter_async_context(Relay(RelaySettings(port=0, home=home / "relay", **MESH_FIELDS)))
        share = f"kid={sys.executable} {REPO / 'tests' / 'servers' / 'content_child.py'}"
        srv = await stack.enter_async_context(Node(_settings(home, "srv", notes=notes, share=[share], relays=[relay.url])))
        probe = Probe()
        for server in (echo_server(), probe_server(probe)):
            await srv.tools.add_provider(HostedServer(server))
            await srv.content.add_server(server)
        srv.content.page_size = PAGE_SIZE
        await wait_attached(relay.url, srv.peer_id)
        mid, front, far = [await stack.enter_async_context(Node(_settings(home, name))) for name in ("mid", "front", "far")]
        # No health pings from the relayed peer: they go unanswered through a relay (found here, reported), and srv would be marked dead.
        relayed = await stack.enter_async_context(Node(_settings(home, "relayed", health_interval=60.0)))
        await _knows(mid, srv.mcp_url)
        await _knows(front, srv.mcp_url)
        await _knows(far, mid.mcp_url)
        await _knows(relayed, relayed_url(relay.url, srv.peer_id))
        await wait_until(lambda: any(o.key == "srv__greet" for o in far.content.offers("prompt")), "far offers srv's prompts, two hops away", 15)
        errlog = stack.enter_context((home / "gateway.log").open("w"))
        targets: dict[str, Any] = {"direct": srv.mcp_url, "one_hop": front.mcp_url, "two_hops": far.mcp_url, "relay": relayed.mcp_url}
        sessions = {}
        for era, mode in ERAS.items():
            targets["gateway"] = _gateway(home / f"gateway-{mode}", srv.mcp_url)
            for path in PATHS:
                sessions[path, era] = await _open(stack, targets[path], mode, errlog)
        admin = (await _open(stack, srv.mcp_url, "auto", errlog)).client
        yield World(srv, probe, sessions, admin)
