"""A remote tool that asks the user reaches the user's client, on every path into the mesh, in both protocol eras.

The tool is `ask` (servers/echo.py), served by srv. The paths (`PATHS`):
the client talks to srv itself (direct); to a peer that knows srv (one hop,
`srv__ask`); to a peer that calls srv through mid (two hops: `mesh_call` of
mid's `srv__ask`, as a client cannot name a tool two peers away); to the
relay's `/p/<srv>/mcp` (relay); to a peer that knows srv only by that relayed
URL (relay_hop, `srv__ask`); and to `mcpfed gateway` over stdio (gateway, a
child process). The eras (`ERAS`): 2026-07-28, where the question comes
back as an `input_required` result the client answers and retries, and
2025-11-25, where it comes as `elicitation/create` mid-call. Real SDK
clients, real peers on loopback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp.types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.context import ClientRequestContext
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from federation.client import result_text
from federation.const import TRACE_META_KEY
from federation.discovery.relay import relayed_url
from federation.node import Node
from federation.receipt import RECEIPT_META_KEY
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from federation.toolhost import HostedServer
from servers.echo import build_server as echo_server
from tests.support.paths import REPO
from tests.support.relay import AUTH, MESH, MESH_FIELDS, wait_attached
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

PATHS = ["direct", "one_hop", "two_hops", "relay", "relay_hop", "gateway"]
ERAS = {"2026-07-28": "auto", "2025-11-25": "legacy"}
QUIET: dict[str, Any] = {"health_interval": 60.0}


@dataclass
class User:
    """The person behind the client: what they answer, and the questions they saw."""

    answer: types.ElicitResult = field(default_factory=lambda: types.ElicitResult(action="accept", content={"answer": "blue"}))
    asked: list[str] = field(default_factory=list)
    silent: bool = False
    """Never answers (the deadline case)."""

    async def __call__(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(getattr(params, "message", ""))
        if self.silent:
            await anyio.sleep_forever()
        return self.answer


@dataclass
class World:
    srv: Node
    front: Node
    """Knows srv and mid: the peer a one-hop or two-hop client talks to."""
    relay_url: str
    """srv's `/p/<id>/mcp` on the relay."""
    behind_relay: Node
    """Knows srv only by its relayed URL."""
    gateway_home: Path


def _settings(home: Path, name: str, **more: Any) -> PeerSettings:
    return PeerSettings(name=name, port=0, home=home / name, model=None, mdns="off", **MESH_FIELDS, **QUIET, **more)


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """srv (echo and ask) attached to a relay; mid knows srv; front knows srv and mid."""
    home = tmp_path_factory.mktemp("elicit")
    async with AsyncExitStack() as stack:
        relay = await stack.enter_async_context(Relay(RelaySettings(port=0, home=home / "relay", **MESH_FIELDS)))
        srv = await stack.enter_async_context(Node(_settings(home, "srv", relays=[relay.url])))
        await srv.tools.add_provider(HostedServer(echo_server()))
        await wait_attached(relay.url, srv.peer_id)
        mid = await stack.enter_async_context(Node(_settings(home, "mid")))
        await mid.add_peer(srv.mcp_url)
        front = await stack.enter_async_context(Node(_settings(home, "front")))
        await front.add_peer(srv.mcp_url)
        await front.add_peer(mid.mcp_url)
        behind_relay = await stack.enter_async_context(Node(_settings(home, "behind")))
        await behind_relay.add_peer(relayed_url(relay.url, srv.peer_id))
        for node in (mid, front, behind_relay):
            await wait_until(lambda node=node: "srv__ask" in {t.name for t in node.tools.tools}, f"{node.name} offers srv__ask")  # type: ignore[misc]
        yield World(srv, front, relayed_url(relay.url, srv.peer_id), behind_relay, home / "gateway")


def _http(url: str, mode: str, user: User | None) -> Client:
    http = httpx2.AsyncClient(headers=AUTH, timeout=60)
    return Client(streamable_http_client(url, http_client=http), mode=mode, elicitation_callback=user)


def _gateway(world: World, mode: str, user: User | None) -> AbstractAsyncContextManager[Client]:
    mesh = {"MCPFED_MESH": MESH.id, "MCPFED_MESH_NAME": MESH.name, "MCPFED_MESH_SECRET": MESH.secret}
    env = os.environ | mesh | {"MCPFED_HOME": str(world.gateway_home), "MCPFED_HEALTH_INTERVAL": "60"}
    args = ["-m", "federation.cli", "gateway", "--mdns", "off", "--peer", world.srv.mcp_url]
    params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=REPO)

    @asynccontextmanager
    async def client() -> AsyncIterator[Client]:
        world.gateway_home.mkdir(exist_ok=True)
        with (world.gateway_home / "stderr.log").open("a") as errlog:
            async with Client(stdio_client(params, errlog=errlog), mode=mode, elicitation_callback=user) as connected:
                yield connected

    return client()


Ask = Callable[[str, dict[str, Any] | None], Awaitable[types.CallToolResult]]


@asynccontextmanager
async def asking(world: World, path: str, era: str, user: User | None) -> AsyncIterator[Ask]:
    """`ask(question, meta)` on `path`, from a client of `era` whose user is `user` (None: a client without elicitation)."""
    mode = ERAS[era]
    urls = {"direct": world.srv.mcp_url, "one_hop": world.front.mcp_url, "two_hops": world.front.mcp_url, "relay": world.relay_url, "relay_hop": world.behind_relay.mcp_url}
    url = urls.get(path)
    connect = _gateway(world, mode, user) if path == "gateway" else _http(url or "", mode, user)
    async with connect as client:
        assert client.protocol_version == era

        async def ask(question: str, meta: dict[str, Any] | None = None) -> types.CallToolResult:
            arguments = {"question": question}
            with anyio.fail_after(30):  # never a hang
                if path == "two_hops":
                    return await client.call_tool("mesh_call", {"peer": "mid", "tool": "srv__ask", "arguments": arguments}, meta=meta)  # type: ignore[arg-type]
                return await client.call_tool("ask" if path in ("direct", "relay") else "srv__ask", arguments, meta=meta)  # type: ignore[arg-type]

        yield ask


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
async def test_the_question_reaches_the_user_and_the_answer_the_tool(world: World, path: str, era: str) -> None:
    user = User()
    async with asking(world, path, era, user) as ask:
        result = await ask("Favourite colour?", None)
    assert not result.is_error, result_text(result)
    assert result_text(result) == "blue"
    assert user.asked == ["Favourite colour?"], "asked once, with the tool's own words"


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
async def test_a_declined_question_reaches_the_tool_as_declined(world: World, path: str, era: str) -> None:
    user = User(answer=types.ElicitResult(action="decline"))
    async with asking(world, path, era, user) as ask:
        result = await ask("Share your location?", None)
    assert result_text(result) == "The user declined the question; no answer."


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
async def test_a_client_without_elicitation_is_refused_not_left_waiting(world: World, path: str, era: str) -> None:
    async with asking(world, path, era, None) as ask:
        with pytest.raises(MCPError) as refused:
            await ask("Anyone there?", None)
    assert refused.value.error.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY
    assert "did not declare the form elicitation capability" in refused.value.error.message


@pytest.mark.parametrize("path", PATHS)
async def test_a_user_who_never_answers_is_given_up_at_the_callers_deadline(world: World, path: str) -> None:
    """2025-11-25 only: there a peer waits on the user mid-call. In 2026-07-28 nothing waits: the client answers when it retries."""
    user = User(silent=True)
    async with asking(world, path, "2025-11-25", user) as ask:
        result = await ask("Still there?", {TRACE_META_KEY: {"deadline_s": 1.0}})
    assert user.asked == ["Still there?"]
    assert result_text(result) == "The user cancelled the question; no answer."


@pytest.mark.parametrize("era", ERAS)
async def test_one_hop_books_each_round_and_receipts_the_answer(world: World, era: str) -> None:
    """front's ledger: a made and a served row per round, `input_required` until the answering round, whose receipt checks."""
    trace_id = f"elicit-books-{era}"
    async with asking(world, "one_hop", era, User()) as ask:
        result = await ask("Favourite colour?", {TRACE_META_KEY: {"trace_id": trace_id}})  # every round of a 2026 call, one trace
    assert (result.meta or {})[RECEIPT_META_KEY]["trace_id"] == trace_id
    for node in (world.front, world.srv):
        await node.store.flush()
    front = sorted((r.role, r.outcome, r.receipt_ok) for r in world.front.store.calls(500) if r.trace_id == trace_id)
    srv = sorted((r.role, r.outcome) for r in world.srv.store.calls(500) if r.trace_id == trace_id)
    if era == "2026-07-28":  # each round is a call of its own: the client retries
        assert front == [("made", "input_required", None), ("made", "ok", True), ("served", "input_required", None), ("served", "ok", None)]
    else:  # one call, asked mid-call by front: front made two rounds to srv and served one call
        assert front == [("made", "input_required", None), ("made", "ok", True), ("served", "ok", None)]
    assert srv == [("served", "input_required"), ("served", "ok")]


@pytest.mark.parametrize("era", ERAS)
async def test_a_refused_question_is_booked_as_an_error_with_the_reason(world: World, era: str) -> None:
    trace_id = f"elicit-refused-{era}"
    async with asking(world, "direct", era, None) as ask:
        with pytest.raises(MCPError):
            await ask("Anyone there?", {TRACE_META_KEY: {"trace_id": trace_id}})
    await world.srv.store.flush()
    rows = [(r.role, r.outcome, r.error or "") for r in world.srv.store.calls(500) if r.trace_id == trace_id]
    assert [(role, outcome) for role, outcome, _ in rows] == [("served", "error")]
    assert "did not declare the form elicitation capability" in rows[0][2]
