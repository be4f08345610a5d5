"""The model queue of a real peer, fed by real peers: turns per caller, the cap, the busy error, and mesh_ask moving on from a busy peer."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import Client

from federation.client import connect, result_text
from federation.node import Node
from federation.settings import PeerSettings
from tests.support.mesh import introduce
from tests.support.models import BASE_MODEL
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.model]

LONG = 300
"""Tokens of a call that keeps the worker busy while the test fills the queue (the base Gemma never ends early)."""


@pytest.fixture
async def model_and_two_peers(make_settings: Callable[..., PeerSettings]) -> AsyncIterator[tuple[Node, Node, Node]]:
    """A model peer whose queue holds 4 calls, 3 of them from one caller, and two light peers that reach it through the mesh."""
    settings = make_settings(name="model", model=BASE_MODEL, n_ctx=1024, queue_limit=4, queue_per_caller=3)
    async with Node(settings) as model, Node(make_settings(name="alice")) as alice, Node(make_settings(name="bob")) as bob:
        await model.wait_ready()
        await introduce(model, alice, bob)
        await wait_until(lambda: all(any(t.name == "model__generate" for t in peer.tools.tools) for peer in (alice, bob)))
        yield model, alice, bob


class Calls:
    """Model calls in flight through several clients; records the order the accepted ones finished in."""

    def __init__(self) -> None:
        self.finished: list[str] = []
        self.results: dict[str, types.CallToolResult] = {}

    async def generate(self, client: Client, tool: str, label: str, max_tokens: int) -> None:
        result = await client.call_tool(tool, {"prompt": f"{label}:", "max_tokens": max_tokens, "seed": 1})
        self.results[label] = result
        if not result.is_error:
            self.finished.append(label)


async def test_a_peer_flooding_the_model_gets_its_share_another_is_served_before_the_flood_drains_and_nothing_is_lost(
    model_and_two_peers: tuple[Node, Node, Node],
) -> None:
    model, alice, bob = model_and_two_peers
    engine = model.engine
    assert engine is not None
    calls = Calls()
    async with connect(alice.mcp_url) as a, connect(bob.mcp_url) as b, connect(model.mcp_url) as direct, anyio.create_task_group() as group:
        group.start_soon(calls.generate, a, "model__generate", "a1", LONG)
        await wait_until(lambda: engine.in_flight == 1, "alice's first call running")
        for waiting, label in enumerate(["a2", "a3", "a4"], start=1):
            group.start_soon(calls.generate, a, "model__generate", label, 2)
            await wait_until(lambda waiting=waiting: engine.queued == waiting, f"{label} waiting")
        over_share = await a.call_tool("model__generate", {"prompt": "a5:", "max_tokens": 2})
        group.start_soon(calls.generate, b, "model__generate", "b1", 2)
        await wait_until(lambda: engine.queued == 4, "bob's call waiting despite alice's flood")
        over_cap = await direct.call_tool("generate", {"prompt": "c1:", "max_tokens": 2})
        assert engine.in_flight == 1 and "a1" not in calls.finished, "the refusals came while alice's first call ran"
    assert calls.finished == ["a1", "a2", "b1", "a3", "a4"], "bob waited for one more of alice's calls, not for all of them"
    assert all(calls.results[label].structured_content["finish_reason"] in ("length", "stop") for label in calls.finished), "every accepted call ran to its end"
    assert over_share.is_error and re.fullmatch(
        r"busy: 3 calls are waiting for this model; retry after ~\d+ s \(3 of them are yours, the most one caller may have waiting\)\.", result_text(over_share)
    )
    assert over_cap.is_error and re.fullmatch(r"busy: 4 calls are waiting for this model; retry after ~\d+ s\.", result_text(over_cap))
    assert (engine.in_flight, engine.queued) == (0, 0)


async def test_mesh_ask_that_meets_a_busy_peer_is_answered_by_another(make_settings: Callable[..., PeerSettings]) -> None:
    """`full` takes no waiting call and is kept busy; the asking peer still sees it idle (no health ping since), so it tries it first."""
    model = {"model": BASE_MODEL, "n_ctx": 1024}
    async with (
        Node(make_settings(name="full", queue_limit=0, **model)) as full,
        Node(make_settings(name="spare", **model)) as spare,
        Node(make_settings(name="asker", health_interval=60)) as asker,
    ):
        await full.wait_ready()
        await spare.wait_ready()
        await introduce(full, spare, asker)
        await wait_until(lambda: {"full__chat", "spare__chat"} <= {t.name for t in asker.tools.tools})
        assert full.engine is not None and spare.engine is not None
        calls = Calls()
        async with connect(full.mcp_url) as on_full, connect(asker.mcp_url) as client, anyio.create_task_group() as group:
            group.start_soon(calls.generate, on_full, "generate", "keeps full busy", LONG)
            group.start_soon(calls.generate, client, "spare__generate", "makes spare look loaded", 60)
            await wait_until(lambda: full.engine.in_flight == 1 and spare.engine.in_flight == 1, "both models generating")
            # Both meet `full` within moments of seeing it busy: the named call is refused at once, and the routed
            # one tries `full` before it waits for `spare` (asked the other way round, `full`'s generation could end
            # at the model's end of turn while the routed ask waits for `spare`).
            named = await client.call_tool("mesh_ask", {"prompt": "Name a colour.", "max_tokens": 4, "peer": "full"})
            answer = await client.call_tool("mesh_ask", {"prompt": "Name a colour.", "max_tokens": 4})
    assert not answer.is_error, result_text(answer)
    attempts: list[dict[str, Any]] = answer.structured_content["attempts"]
    assert [(a["peer_name"], a["outcome"]) for a in attempts] == [("full", "busy"), ("spare", "ok")]
    assert attempts[0]["error"].startswith("busy: 0 calls are waiting for this model")
    assert named.is_error and result_text(named).startswith("busy: "), "a call to a named peer reports it busy"
    assert sorted(calls.finished) == ["keeps full busy", "makes spare look loaded"]
