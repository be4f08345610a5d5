"""Routing across real peers on loopback: mesh tools, forwarding, streaming, failover, loops, receipts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest

from federation.client import call_tool, connect
from federation.const import ANSWER_RESTARTS_PREFIX
from federation.node import Node
from tests.support.mesh import introduce
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
NOTES = ROOT / "examples" / "notes"


@pytest.fixture
async def pair(model_node: Node, start_node: Any) -> Any:
    """A light peer (no model) that knows the model peer, and vice versa."""
    async with start_node(name="light") as light:
        await introduce(model_node, light)
        await wait_until(lambda: any(t.name.endswith("__generate") for t in light.tools.tools))
        yield model_node, light


async def test_light_peer_offers_remote_tools_under_peer_names(pair: Any) -> None:
    model, light = pair
    async with connect(light.mcp_url) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert {"mesh_peers", "mesh_ask", "mesh_call", "mesh_fan_out"} <= names
    assert {f"{model.name}__generate", f"{model.name}__chat", f"{model.name}__model_info"} <= names
    assert not any(n.startswith(f"{model.name}__mesh_") for n in names), "mesh tools are not re-exported"


async def test_mesh_ask_streams_from_the_model_peer_and_says_who_answered(pair: Any) -> None:
    model, light = pair
    pieces: list[str] = []

    async def collect(text: str) -> None:
        pieces.append(text)

    async with connect(light.mcp_url) as client:
        result = await call_tool(client, "mesh_ask", {"prompt": "Name a colour.", "max_tokens": 8}, on_text=collect)
    answer = result.structured_content
    assert answer["peer"] == model.peer_id
    assert answer["usage"]["completion_tokens"] > 0
    assert "".join(pieces) == answer["text"], "progress passes through the hop in order"


async def test_forwarded_call_returns_upstream_validation_error_intact(pair: Any) -> None:
    model, light = pair
    async with connect(light.mcp_url) as client:
        result = await client.call_tool(f"{model.name}__generate", {"prompt": 7})
    assert result.is_error
    assert "prompt" in result.content[0].text and "valid string" in result.content[0].text


async def test_unknown_peer_and_unknown_tool_are_clear_errors(pair: Any) -> None:
    model, light = pair
    async with connect(light.mcp_url) as client:
        unknown_peer = await client.call_tool("mesh_call", {"peer": "nobody", "tool": "x"})
        unknown_tool = await client.call_tool("mesh_call", {"peer": model.name, "tool": "nope", "arguments": {}})
    assert unknown_peer.is_error and "unknown peer 'nobody'" in unknown_peer.content[0].text
    assert model.name in unknown_peer.content[0].text, "the error lists the peers that do exist"
    assert unknown_tool.is_error and "Unknown tool: 'nope'" in unknown_tool.content[0].text


async def test_call_that_would_loop_is_refused(pair: Any) -> None:
    model, light = pair
    async with connect(light.mcp_url) as client:
        result = await client.call_tool(
            "mesh_call", {"peer": model.name, "tool": "mesh_call", "arguments": {"peer": light.name, "tool": "mesh_peers"}}
        )
    assert result.is_error
    assert "would loop" in result.content[0].text


async def test_hop_limit_is_enforced(model_node: Node) -> None:
    async with connect(model_node.mcp_url) as client:
        result = await client.call_tool("model_info", {}, meta={"mcpfed/trace": {"hop": 9, "visited": []}})
    assert result.is_error and "over the limit" in result.content[0].text


async def test_receipt_is_verified_and_stored_in_the_callers_ledger(pair: Any) -> None:
    model, light = pair
    async with connect(light.mcp_url) as client:
        await call_tool(client, f"{model.name}__generate", {"prompt": "Hi", "max_tokens": 3})
    await anyio.sleep(0.5)  # the store writes in batches
    made = [r for r in light.store.calls() if r.role == "made"]
    served = [r for r in model.store.calls() if r.role == "served"]
    assert made and made[0].callee == model.peer_id and made[0].receipt_ok is True
    assert made[0].tokens_out == 3
    assert served and served[0].trace_id == made[0].trace_id, "caller and callee agree on the trace"


async def test_cancelling_a_routed_call_frees_the_remote_model(pair: Any) -> None:
    model, light = pair
    assert model.engine is not None
    async with connect(light.mcp_url) as client:
        with anyio.move_on_after(0.6):
            await client.call_tool("mesh_ask", {"prompt": "Tell a very long story.", "max_tokens": 1500})
        await wait_until(lambda: model.engine.in_flight == 0, timeout=5)
        result = await call_tool(client, "mesh_ask", {"prompt": "Hi", "max_tokens": 3})
    assert result.structured_content["usage"]["completion_tokens"] == 3


async def test_tools_list_changed_reaches_a_client_when_a_peer_joins(model_node: Node, start_node: Any) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if (isinstance(message, types.ServerNotification) and isinstance(message, types.ToolListChangedNotification)) or (
            getattr(message, "root", None) is not None and isinstance(message.root, types.ToolListChangedNotification)
        ):
            changed.set()

    async with start_node(name="watcher") as watcher:
        from mcp import Client

        async with Client(watcher.mcp_url, mode="legacy", message_handler=on_message) as client:
            before = {t.name for t in (await client.list_tools()).tools}
            await introduce(watcher, model_node)
            with anyio.fail_after(10):
                await changed.wait()
            after = {t.name for t in (await client.list_tools()).tools}
    assert f"{model_node.name}__chat" in after - before


async def test_failover_after_the_answering_peer_is_killed_mid_generation(model_node: Node, start_node: Any, tmp_path: Path) -> None:
    """Kill the chosen peer with SIGKILL mid-stream: the ask is retried on the other model peer."""
    victim = subprocess.Popen(
        [sys.executable, "-m", "federation.cli", "serve", "--port", "0", "--name", "victim", "--ctx", "2048"],
        cwd=ROOT,
        env=os.environ | {"MCPFED_HOME": str(tmp_path / "victim")},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert victim.stdout is not None
        url = await anyio.to_thread.run_sync(victim.stdout.readline)
        async with start_node(name="caller") as caller:
            await caller.add_peer(url.strip())  # the victim is first among equals
            await introduce(caller, model_node)
            seen: list[str] = []

            async def kill_at_the_first_piece(text: str) -> None:
                # Freeze first (SIGSTOP takes effect at once), so the victim cannot finish the
                # answer in the moment between emitting a piece and our hearing of it; then kill.
                seen.append(text)
                if len(seen) == 1:
                    victim.send_signal(signal.SIGSTOP)
                    victim.send_signal(signal.SIGKILL)

            async with connect(caller.mcp_url) as client:
                result = await call_tool(client, "mesh_ask", {"prompt": "Count to fifty.", "max_tokens": 200}, on_text=kill_at_the_first_piece)
            answer = result.structured_content
            assert [a["peer_name"] for a in answer["attempts"]] == ["victim", model_node.name]
            assert answer["attempts"][0]["outcome"] == "peer_gone"
            assert answer["peer"] == model_node.peer_id and answer["usage"]["completion_tokens"] > 0
            assert caller.peers.find("victim").status in ("suspect", "dead")
            notices = [i for i, text in enumerate(seen) if text.startswith(ANSWER_RESTARTS_PREFIX)]
            assert len(notices) == 1 and 1 <= notices[0] < len(seen) - 1, "the stream says where the answer starts again"
            assert "victim" in seen[notices[0]] and model_node.name in seen[notices[0]]
    finally:
        victim.kill()
        victim.wait(timeout=10)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_remote_tool_streams_progress_in_either_protocol_era(pair: Any, mode: str) -> None:
    """Modern requests take the message-level fast path, legacy sessions the SDK path: same behaviour."""
    from mcp import Client

    model, light = pair
    pieces: list[str] = []

    async def collect(progress: float, total: float | None, message: str | None) -> None:
        pieces.append(message or "")

    async with Client(light.mcp_url, mode=mode) as client:
        result = await client.call_tool(f"{model.name}__generate", {"prompt": "One, two,", "max_tokens": 6}, progress_callback=collect)
    assert not result.is_error
    assert "".join(pieces) == result.structured_content["text"] and len(pieces) >= 2
    await anyio.sleep(0.5)
    made = [r for r in light.store.calls() if r.role == "made"]
    assert made and made[0].tool == "generate" and made[0].receipt_ok is True and made[0].tokens_out == 6


async def test_callers_deadline_bounds_the_forwarded_call(pair: Any) -> None:
    model, light = pair
    async with connect(light.mcp_url) as client:
        result = await client.call_tool(
            f"{model.name}__generate", {"prompt": "Write a long story.", "max_tokens": 400}, meta={"mcpfed/trace": {"deadline_s": 0.5}}
        )
    assert result.is_error
    assert "did not answer generate within 0.5 s" in result.content[0].text
    assert light.peers.get(model.peer_id).status == "up", "a slow peer is not a dead one"


async def test_upstream_tool_with_forbidden_characters_is_renamed_and_still_callable(start_node: Any) -> None:
    from mcp.server.mcpserver import MCPServer

    from federation.toolhost import HostedServer

    odd = MCPServer("odd", log_level="WARNING")
    odd.add_tool(lambda text: text.upper(), name="shout it/now!", description="Upper-case the text.")
    async with start_node(name="upstream") as upstream, start_node(name="caller") as caller:
        await upstream.tools.add_provider(HostedServer(odd))
        await introduce(upstream, caller)
        await wait_until(lambda: any("shout" in t.name for t in caller.tools.tools))
        exposed = next(t.name for t in caller.tools.tools if "shout" in t.name)
        assert exposed.startswith("upstream__shout_it_now_") and len(exposed) <= 48
        async with connect(caller.mcp_url) as client:
            result = await call_tool(client, exposed, {"text": "hi"})
    assert result.content[0].text == "HI"


async def test_a_receipt_with_a_bad_signature_is_flagged_but_the_call_succeeds(start_node: Any) -> None:
    from federation.identity import Identity

    async with start_node(name="liar") as liar, start_node(name="caller") as caller:
        liar.tools._identity = Identity.generate()  # signs receipts with a key its card does not carry
        await introduce(liar, caller)
        async with connect(caller.mcp_url) as client:
            result = await client.call_tool("mesh_call", {"peer": "liar", "tool": "mesh_peers"})
        assert not result.is_error
        await anyio.sleep(0.5)
    made = [r for r in caller.store.calls() if r.role == "made"]
    assert made and made[0].receipt_ok is False
    assert "not the peer called" in made[0].receipt_problem


async def test_mesh_ask_on_a_model_peer_is_served_by_its_own_model(model_node: Node) -> None:
    """No other peer: the local model answers, in-process, and that is no loop."""
    async with connect(model_node.mcp_url) as client:
        result = await call_tool(client, "mesh_ask", {"prompt": "Hi", "max_tokens": 3}, meta={"mcpfed/trace": {"trace_id": "t1", "span_id": "s1"}})
        itself = await call_tool(client, "mesh_call", {"peer": model_node.name, "tool": "model_info"})
    assert result.structured_content["peer"] == model_node.peer_id
    assert result.structured_content["trace_id"] == "t1"
    assert itself.structured_content["name"]


async def test_peers_joining_together_bring_one_tools_list_changed(start_node: Any) -> None:
    """Five peers admitted at once: a legacy client hears the change once (it was told once per peer, and 35 times was seen)."""
    from mcp import Client

    from federation.discovery.admission import discovery_client, fetch_card

    notices: list[Any] = []

    async def on_message(message: Any) -> None:
        if isinstance(getattr(message, "root", message), types.ToolListChangedNotification):
            notices.append(message)

    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(start_node(name="watcher"))
        joiners = [await stack.enter_async_context(start_node(name=f"notes{i}", notes=NOTES)) for i in range(5)]
        async with discovery_client() as http:
            cards = [await fetch_card(http, j.mcp_url, mesh=None) for j in joiners]
        async with Client(watcher.tools.server, mode="legacy", message_handler=on_message) as client:
            await client.list_tools()  # a legacy session is notified once it has listed
            for joiner, card in zip(joiners, cards, strict=True):
                watcher.peers.admit(card, "static", joiner.mcp_url)
            wanted = {f"notes{i}__search_notes" for i in range(5)}
            with anyio.fail_after(10):
                while not wanted <= {t.name for t in (await client.list_tools()).tools}:
                    await anyio.sleep(0.02)
            await client.list_tools()  # one more round trip: every notice sent before it has arrived
    assert 1 <= len(notices) <= 2, f"{len(notices)} notifications for one burst of five peers"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_callees_receipt_reaches_the_client_unchanged_through_a_hop(start_node: Any, mode: str) -> None:
    """Both protocol eras (SDK path and message-level path) hand the client the receipt the serving peer signed."""
    from mcp import Client

    from federation.receipt import RECEIPT_META_KEY, served_by
    from federation.toolhost import HostedServer
    from servers.echo import build_server as echo_server

    async with start_node(name="srv") as srv, start_node(name="front") as front:
        await srv.tools.add_provider(HostedServer(echo_server()))
        await introduce(front, srv)
        await wait_until(lambda: "srv__echo" in {t.name for t in front.tools.tools})
        async with Client(front.mcp_url, mode=mode) as client:
            result = await client.call_tool("srv__echo", {"text": "hi"})
        receipt = (result.meta or {})[RECEIPT_META_KEY]
        assert (receipt["peer"], receipt["tool"]) == (srv.peer_id, "echo")
        assert served_by(result.meta or {}, result, front.peer_id) == (srv.peer_id, None), "front's hop links the client's call to srv"
        await front.store.flush()
    made = [r for r in front.store.calls() if r.role == "made"]
    assert made and made[0].receipt_ok is True and made[0].callee == srv.peer_id


async def test_over_two_hops_the_ledger_credits_the_peer_that_served(start_node: Any) -> None:
    """carol -> bob -> alice: alice's receipt reaches carol, and carol's ledger says alice served (bob forwarded)."""
    from federation.receipt import RECEIPT_META_KEY
    from tests.support.mesh import echo_two_hops_away

    async with echo_two_hops_away(start_node) as (alice, _, carol, result):
        assert (result.meta or {})[RECEIPT_META_KEY]["peer"] == alice.peer_id
    made = [r for r in carol.store.calls() if r.role == "made"]
    assert made and made[0].receipt_ok is True, made[0].receipt_problem
    assert made[0].callee == alice.peer_id
