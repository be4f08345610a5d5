"""Pooled compute end to end: two lending peers and a host serve the embedded model split three ways.

Real peers (in this process), real ggml RPC lenders (child processes), the
split model in the host's child process, every byte between them through
the mesh-authenticated lend tunnel.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

from federation.client import call_tool, connect
from federation.const import ANSWER_RESTARTS_PREFIX
from federation.node import Node
from federation.pooled.host import MeshSplitEngine
from federation.settings import PeerSettings
from servers import ggml_rpc
from servers.embedded_models import model_path
from servers.llama_engine import LlamaEngine
from tests.support.models import BASE_MODEL
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.skipif(not ggml_rpc.supports_rpc(), reason="llama-cpp-python built without -DGGML_RPC=ON")]

MESH = {"mesh": "pooledmesh01", "mesh_name": "pool", "mesh_secret": "pooled-compute-test-secret"}
PROMPT = "The capital of France is"


@asynccontextmanager
async def split_mesh(make_settings: Callable[..., PeerSettings], **host: Any) -> AsyncIterator[tuple[Node, list[Node]]]:
    """Two lenders and a host that knows them (`--peer`), the host's split model loaded."""
    async with AsyncExitStack() as stack:
        lenders = [await stack.enter_async_context(Node(make_settings(name=f"lender{i}", lend=True, lend_mem="1GB", threads=1, **MESH))) for i in (1, 2)]
        settings = make_settings(name="host", model=BASE_MODEL, n_ctx=512, threads=1, split="auto", peers=[n.mcp_url for n in lenders], **MESH | host)
        node = await stack.enter_async_context(Node(settings))
        await node.wait_ready()
        yield node, lenders


async def generate(node: Node, **arguments: Any) -> Any:
    async with connect(node.mcp_url, headers={"Authorization": f"Bearer {MESH['mesh_secret']}"}) as client:
        return await client.call_tool("generate", {"prompt": PROMPT, "max_tokens": 24, "temperature": 0.0, **arguments})


async def unsplit_tokens() -> str:
    async with LlamaEngine(model_path(BASE_MODEL), n_ctx=512, n_threads=1) as engine:
        await engine.wait_ready()
        done = await engine.complete(PROMPT, max_tokens=24, temperature=0.0)
        return done.text


async def test_split_three_ways_gives_the_unsplit_tokens_and_credits_each_lender(make_settings: Callable[..., PeerSettings]) -> None:
    expected = await unsplit_tokens()
    async with split_mesh(make_settings) as (host, lenders):
        engine = host.engine
        assert isinstance(engine, MeshSplitEngine)
        assert engine.plan is not None and {peer for peer, _ in engine.plan.lenders} == {n.peer_id for n in lenders}
        result = await generate(host)
        assert not result.is_error, result
        assert result.structured_content["text"] == expected
        placement = engine.describe()["placement"]
        assert {entry.get("lender") for entry in placement[1:]} == {"lender1", "lender2"}
        assert all(lender.card().lend is not None and lender.card().lend.host == host.peer_id for lender in lenders)
        await host.store.flush()
        rows = [row for row in await anyio.to_thread.run_sync(host.store.calls) if row.role == "lent"]
        assert {row.callee for row in rows} == {n.peer_id for n in lenders}


async def test_a_lender_killed_mid_generation_fails_the_call_by_name_and_the_host_replans(make_settings: Callable[..., PeerSettings]) -> None:
    async with split_mesh(make_settings) as (host, lenders):
        engine = host.engine
        assert isinstance(engine, MeshSplitEngine)
        victim = lenders[0]
        answer: list[Any] = []

        async def long_generation() -> None:
            answer.append(await generate(host, max_tokens=400))

        async with anyio.create_task_group() as group:
            group.start_soon(long_generation)
            await wait_until(lambda: engine.in_flight == 1, "the generation to start")
            await anyio.sleep(0.3)
            assert victim.lending is not None and victim.lending.pid is not None
            os.kill(victim.lending.pid, signal.SIGKILL)
        result = answer[0]
        assert result.is_error
        assert "lender1" in result.content[0].text and "went away" in result.content[0].text
        await wait_until(lambda: engine.state.value == "ready", "the host to re-plan without lender1", timeout=60)
        assert engine.plan is not None and [peer for peer, _ in engine.plan.lenders] == [lenders[1].peer_id]
        again = await generate(host)
        assert not again.is_error, again


async def test_a_routed_ask_starts_again_on_another_peer_when_a_lender_dies_mid_answer(make_settings: Callable[..., PeerSettings]) -> None:
    """`mesh_ask` is a capability call: the split host's model failing mid-answer sends it to the next peer."""
    async with split_mesh(make_settings) as (host, lenders), AsyncExitStack() as stack:
        spare = await stack.enter_async_context(Node(make_settings(name="spare", model=BASE_MODEL, n_ctx=512, threads=1, **MESH)))
        caller = await stack.enter_async_context(Node(make_settings(name="caller", model=None, **MESH)))
        await caller.add_peer(host.mcp_url)  # the split host is first among equals
        await caller.add_peer(spare.mcp_url)
        await spare.wait_ready()
        assert lenders[0].lending is not None and lenders[0].lending.pid is not None
        seen: list[str] = []

        async def kill_a_lender_at_the_first_piece(text: str) -> None:
            seen.append(text)
            if len(seen) == 1:
                os.kill(lenders[0].lending.pid, signal.SIGKILL)  # type: ignore[union-attr]

        async with connect(caller.mcp_url, headers={"Authorization": f"Bearer {MESH['mesh_secret']}"}) as client:
            await wait_until(lambda: {f"{host.name}__generate", f"{spare.name}__generate"} <= {t.name for t in caller.tools.tools}, "the caller to learn both models")
            result = await call_tool(client, "mesh_ask", {"prompt": "Count to fifty.", "max_tokens": 200, "temperature": 0.0}, on_text=kill_a_lender_at_the_first_piece)
        answer = result.structured_content
        assert answer is not None and not result.is_error, result
        assert [a["peer_name"] for a in answer["attempts"]] == ["host", "spare"]
        assert answer["attempts"][0]["outcome"] == "model_lost" and "lender1" in answer["attempts"][0]["error"]
        assert answer["peer"] == spare.peer_id and answer["usage"]["completion_tokens"] > 0
        notices = [text for text in seen if text.startswith(ANSWER_RESTARTS_PREFIX)]
        assert len(notices) == 1 and "host" in notices[0] and "spare" in notices[0], "the stream says where the answer starts again"
