"""One call, every path: the same result, receipt, error text and ledger rows whichever way it enters the mesh.

The paths (`ENTRIES`): a modern (2026-07-28) HTTP client and a legacy
(2025-11-25) one calling `<peer>__<tool>` on a peer, the stdio gateway
(`mcpfed gateway`, a child process, legacy handshake as Claude Desktop
speaks it), the `mesh_call` tool, and `Mesh.call` from the Python API. The
routes (`ROUTES`): one hop (A -> srv), two hops (A -> mid -> srv) and one hop
through a relay (A knows srv only by its relayed URL). "A" is the peer whose
forwarder sends the call: the peer a client talks to, the gateway itself, or
the script's light member.

A client cannot name a tool two peers away (the catalog offers only direct
peers' own tools), so at two hops the client paths call `mesh_call`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp.types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from federation import Mesh, PeerError, ToolCallError
from federation.client import result_text
from federation.discovery.relay import relayed_url
from federation.identity import Identity
from federation.node import Node
from federation.receipt import HOPS_META_KEY, RECEIPT_META_KEY, served_by, verify_receipt
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.routing import Router
from federation.settings import PeerSettings
from federation.store import Store, database_url
from federation.toolhost import HostedServer
from servers.echo import build_server as echo_server
from tests.support.paths import NOTES, REPO
from tests.support.processes import serve_process
from tests.support.relay import AUTH, MESH, MESH_FIELDS, wait_attached
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

ENTRIES = ["modern", "legacy", "gateway", "mesh_call", "api"]
ROUTES = ["one_hop", "two_hops", "relay"]
QUIET: dict[str, Any] = {"health_interval": 60.0}
"""No health ping during the module: a stopped peer stays known as up until a call fails, on every path alike."""


@dataclass
class Seen:
    """What the caller got back, whichever path: data or error text, and the result's `_meta`."""

    data: Any = None
    error: str | None = None
    meta: dict[str, Any] | None = None


Call = Callable[[str, str, dict[str, Any], bool], Awaitable[Seen]]
"""(peer, tool, arguments, named): named means call `<peer>__<tool>` where a path can, else `mesh_call`."""


@dataclass
class Entry:
    """One way into the mesh, with the peer A whose forwarder sends the call."""

    a: str
    serves_client: bool
    """A serves the call to an outside client: it adds a hop record and keeps a served row."""
    call: Call
    store: Store
    flush: Callable[[], Awaitable[None]]


def _client_call(client: Client, *, always_mesh_call: bool = False) -> Call:
    async def call(peer: str, tool: str, arguments: dict[str, Any], named: bool) -> Seen:
        if named and not always_mesh_call:
            result = await client.call_tool(f"{peer}__{tool}", arguments)
        else:
            result = await client.call_tool("mesh_call", {"peer": peer, "tool": tool, "arguments": arguments})
        if result.is_error:
            return Seen(error=result_text(result), meta=result.meta)
        return Seen(data=result.structured_content, meta=result.meta)

    return call


def _api_call(mesh: Mesh) -> Call:
    async def call(peer: str, tool: str, arguments: dict[str, Any], named: bool) -> Seen:
        try:
            got = await mesh.call(peer, tool, arguments)
        except (ToolCallError, PeerError) as exc:
            return Seen(error=str(exc))
        return Seen(data=got.data, meta=got.meta)

    return call


def _http(url: str, mode: str) -> Client:
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(headers=AUTH, timeout=60)), mode=mode)  # type: ignore[arg-type]


def _gateway(home: Path, peers: list[str]) -> StdioServerParameters:
    mesh = {"MCPFED_MESH": MESH.id, "MCPFED_MESH_NAME": MESH.name, "MCPFED_MESH_SECRET": MESH.secret}
    env = os.environ | mesh | {"MCPFED_HOME": str(home), "MCPFED_HEALTH_INTERVAL": str(QUIET["health_interval"])}
    args = ["-m", "federation.cli", "gateway", "--mdns", "off", *(a for url in peers for a in ("--peer", url))]
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=REPO)


def _settings(home: Path, name: str, **more: Any) -> PeerSettings:
    return PeerSettings(name=name, port=0, home=home / name, model=None, mdns="off", **MESH_FIELDS, **QUIET, **more)


async def _no_flush() -> None:
    """A child's store cannot be flushed from here: readers poll it instead."""


async def entries(stack: AsyncExitStack, home: Path, tag: str, peers: list[str]) -> dict[str, Entry]:
    """The five ways in, each with its own A that knows `peers` (URLs) and has listed their tools."""
    front = await stack.enter_async_context(Node(_settings(home, f"front{tag}")))
    for url in peers:
        await front.add_peer(url)
    assert sorted(p.url for p in front.peers) == sorted(peers), "each peer is reached where it was named (srv through the relay)"
    await wait_until(lambda: len(front.tools.tools) > 4 and front.service(Router).settled(), f"front{tag} listed its peers' tools", 15)
    gateway_home = home / f"gateway{tag}"
    errlog = stack.enter_context((home / f"gateway{tag}.log").open("w"))
    gateway = await stack.enter_async_context(Client(stdio_client(_gateway(gateway_home, peers), errlog=errlog), mode="legacy"))
    gateway_home /= "clients/gateway"
    gateway_store = Store(database_url(gateway_home))
    gateway_id = (await anyio.to_thread.run_sync(Identity.load_or_create, gateway_home)).peer_id  # reads its key file
    stack.callback(gateway_store.close)
    member = await stack.enter_async_context(Mesh.connect(peers=peers, name=f"script{tag}", home=home / f"script{tag}", **MESH_FIELDS, **QUIET))
    modern, legacy = [await stack.enter_async_context(_http(front.mcp_url, mode)) for mode in ("auto", "legacy")]
    at_front: dict[str, Any] = {"a": front.peer_id, "serves_client": True, "store": front.store, "flush": front.store.flush}
    return {
        "modern": Entry(call=_client_call(modern), **at_front),
        "legacy": Entry(call=_client_call(legacy), **at_front),
        "gateway": Entry(gateway_id, True, _client_call(gateway), gateway_store, _no_flush),
        "mesh_call": Entry(call=_client_call(modern, always_mesh_call=True), **at_front),
        "api": Entry(member.node.peer_id, False, _api_call(member), member.node.store, member.node.store.flush),
    }


@dataclass
class World:
    srv: Node
    mid: Node
    ways: dict[str, dict[str, Entry]]
    """route kind ("direct", "relay") -> entry -> Entry."""


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """srv (echo) attached to a relay; mid knows srv; gone (notes, a child) is killed once every direct A knows it."""
    home = tmp_path_factory.mktemp("parity")

    async with AsyncExitStack() as stack:
        relay = await stack.enter_async_context(Relay(RelaySettings(port=0, home=home / "relay", **MESH_FIELDS)))
        srv = await stack.enter_async_context(Node(_settings(home, "srv", relays=[relay.url])))
        await srv.tools.add_provider(HostedServer(echo_server()))
        await wait_attached(relay.url, srv.peer_id)
        mid = await stack.enter_async_context(Node(_settings(home, "mid")))
        await mid.add_peer(srv.mcp_url)
        await wait_until(lambda: "srv__echo" in {t.name for t in mid.tools.tools}, "mid offers srv__echo")
        (home / "gone").mkdir()
        (home / "gone" / "mesh.json").write_text(MESH.model_dump_json())
        gone_url, gone = await stack.enter_async_context(serve_process(home, "gone", "--notes", str(NOTES)))
        direct = await entries(stack, home, "", [srv.mcp_url, mid.mcp_url, gone_url])
        gone.kill()
        gone.wait(timeout=10)
        relayed = await entries(stack, home, "-r", [relayed_url(relay.url, srv.peer_id)])
        yield World(srv, mid, {"direct": direct, "relay": relayed})


def _names(world: World, entry: Entry) -> dict[str | None, str | None]:
    return {entry.a: "A", world.mid.peer_id: "mid", world.srv.peer_id: "srv", None: None}


async def _rows(world: World, entry: Entry, trace_id: str) -> dict[str, set[tuple[Any, ...]]]:
    """Each peer's ledger rows of one call (by trace id) as (role, caller, callee, tool, outcome, receipt_ok), peers by role."""
    names = _names(world, entry)
    stores = {"A": (entry.store, entry.flush), "mid": (world.mid.store, world.mid.store.flush), "srv": (world.srv.store, world.srv.store.flush)}
    found: dict[str, set[tuple[Any, ...]]] = {}
    for who, (store, flush) in stores.items():
        await flush()
        found[who] = {(r.role, names.get(r.caller, r.caller), names.get(r.callee, r.callee), r.tool, r.outcome, r.receipt_ok) for r in store.calls(500) if r.trace_id == trace_id}
    return found


ROUTE = {"one_hop": ("direct", "srv", "echo"), "two_hops": ("direct", "mid", "srv__echo"), "relay": ("relay", "srv", "echo")}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("path", ENTRIES)
async def test_the_same_call_gets_the_same_result_receipt_and_ledger_rows_on_every_path(world: World, path: str, route: str) -> None:
    kind, peer, tool = ROUTE[route]
    entry = world.ways[kind][path]
    two_hops = route == "two_hops"
    with anyio.fail_after(30):
        seen = await entry.call(peer, tool, {"text": "parity"}, not two_hops)
    assert seen.error is None, seen.error
    assert seen.data == {"result": "parity"}
    meta = seen.meta or {}
    receipt = meta[RECEIPT_META_KEY]
    assert (receipt["peer"], receipt["tool"]) == (world.srv.peer_id, "echo"), "the callee's receipt reaches the caller unchanged"
    result = types.CallToolResult(content=[types.TextContent(type="text", text="parity")], structured_content=seen.data)
    assert verify_receipt(receipt, result=result) is None
    names = _names(world, entry)
    hops = [names.get(h["peer"], h["peer"]) for h in meta.get(HOPS_META_KEY, [])]
    assert hops == ["mid"] * two_hops + ["A"] * entry.serves_client, "each forwarding peer adds one hop record beside the receipt"
    called = entry.a if entry.serves_client else (world.mid if two_hops else world.srv).peer_id
    assert served_by(meta, result, called) == (world.srv.peer_id, None)

    a_tool = "srv__echo" if two_hops else "echo"
    client_tool = "mesh_call" if (path == "mesh_call" or two_hops) else f"{peer}__{tool}"
    expected = {
        "A": {("made", "A", "srv", a_tool, "ok", True)} | ({("served", None, "A", client_tool, "ok", None)} if entry.serves_client else set()),
        "mid": {("served", "A", "mid", "srv__echo", "ok", None), ("made", "mid", "srv", "echo", "ok", True)} if two_hops else set(),
        "srv": {("served", "mid" if two_hops else "A", "srv", "echo", "ok", None)},
    }
    rows: dict[str, set[tuple[Any, ...]]] = {}

    async def all_written() -> bool:  # the gateway's rows are written by its own process: poll them
        rows.update(await _rows(world, entry, receipt["trace_id"]))
        return rows == expected

    with anyio.move_on_after(10):
        while not await all_written():
            await anyio.sleep(0.05)
    assert rows == expected


FAILURES = {
    "unknown_peer": ("ghost", "echo", {"text": "x"}, False),
    "unknown_tool": ("srv", "nope", {"text": "x"}, True),
    "bad_arguments": ("srv", "echo", {}, True),
    "peer_killed": ("gone", "search_notes", {"query": "x"}, True),
}


@pytest.mark.parametrize("failure", FAILURES)
async def test_the_same_failure_gets_the_same_error_text_on_every_path(world: World, failure: str) -> None:
    peer, tool, arguments, named = FAILURES[failure]
    texts: dict[str, str | None] = {}
    for path, entry in world.ways["direct"].items():
        with anyio.fail_after(30):
            texts[path] = (await entry.call(peer, tool, arguments, named)).error
    assert all(texts.values()), texts
    assert len({_steady(text) for text in texts.values()}) == 1, "\n".join(f"{path}: {text}" for path, text in texts.items())


def _steady(text: str | None) -> str:
    """The text without what rightly differs between the A's and over time: whom each A knows, how long ago a peer answered."""
    text = re.sub(r"known peers: [^.]*\.", "known peers: ….", text or "")
    return re.sub(r"last seen \d+ s ago", "last seen N s ago", text)
