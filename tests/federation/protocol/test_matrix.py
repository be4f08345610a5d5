"""The compliance matrix: every MCP feature, on every path to a peer, in both protocol eras.

feature (`FEATURES`) x path (`tests.support.protocol.PATHS`: direct, one hop,
two hops, through a relay, the stdio gateway) x era (2026-07-28, and the
2025-11-25 handshake). Real peers, real SDK clients, one world per module
(`tests.support.protocol.protocol_world`). A cell passes, or is skipped with
the reason the spec gives (a feature the era does not have). A new feature
is one more function in `FEATURES`.

Names as a client on each path sees them: srv's own tools and prompts
plainly on the direct path, `srv__<name>` one hop or more away. A client
cannot name a tool two peers away (peers offer only their direct peers'
tools), so at two hops tools are called through `mesh_call`; resources and
prompts are offered transitively, so they need no such detour.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ToolsListChanged

from tests.support.protocol import ERAS, PATHS, Session, World, protocol_world
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with protocol_world(tmp_path_factory.mktemp("protocol")) as built:
        yield built


def _name(path: str, name: str) -> str:
    return name if path == "direct" else f"srv__{name}"


async def _call(session: Session, path: str, tool: str, arguments: dict[str, Any], **options: Any) -> types.CallToolResult:
    if path == "two_hops":
        return await session.client.call_tool("mesh_call", {"peer": "mid", "tool": f"srv__{tool}", "arguments": arguments}, **options)
    return await session.client.call_tool(_name(path, tool), arguments, **options)


def _text(result: types.CallToolResult | types.GetPromptResult | types.ReadResourceResult) -> str:
    if isinstance(result, types.ReadResourceResult):
        return "".join(getattr(c, "text", "") for c in result.contents)
    if isinstance(result, types.GetPromptResult):
        return "".join(getattr(m.content, "text", "") for m in result.messages)
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def _all_pages(list_page: Callable[[str | None], Awaitable[Any]], field: str) -> tuple[list[Any], int]:
    """Every item of a paginated list, and how many pages it took."""
    items: list[Any] = []
    cursor, pages = None, 0
    while True:
        page = await list_page(cursor)
        pages += 1
        items += getattr(page, field)
        cursor = page.next_cursor
        if not cursor:
            return items, pages


async def tools(world: World, path: str, era: str, session: Session) -> None:
    result = await _call(session, path, "echo", {"text": "hi"})
    assert not result.is_error, _text(result)
    assert _text(result) == "hi"


async def resources(world: World, path: str, era: str, session: Session) -> None:
    listed, pages = await _all_pages(lambda cursor: session.client.list_resources(cursor=cursor), "resources")
    uris = {r.uri for r in listed}
    assert {"ai://srv/", "ai://srv/mdns.md", "ai://srv/@kid/kid://readme"} <= uris, uris
    assert pages > 1 or path == "gateway", "the list came in pages (the gateway, a child process, keeps its default page size)"
    note = await session.client.read_resource("ai://srv/mdns.md")
    assert note.contents[0].mime_type == "text/markdown" and _text(note).startswith("# mDNS"), note
    card = _text(await session.client.read_resource("ai://srv/"))
    assert card.startswith("# srv") and world.srv.peer_id in card, "ai://<peer>/ is the peer card"
    assert "shared stdio server's resource" in _text(await session.client.read_resource("ai://srv/@kid/kid://readme"))
    with pytest.raises(MCPError, match=r"no note 'nowhere\.md'"):
        await session.client.read_resource("ai://srv/nowhere.md")


async def templates(world: World, path: str, era: str, session: Session) -> None:
    listed, _pages = await _all_pages(lambda cursor: session.client.list_resource_templates(cursor=cursor), "resource_templates")
    assert "ai://srv/{+path}" in {t.uri_template for t in listed}
    assert _text(await session.client.read_resource("ai://srv/relays")).startswith("# "), "a URI only the template names"


async def prompts(world: World, path: str, era: str, session: Session) -> None:
    listed, _pages = await _all_pages(lambda cursor: session.client.list_prompts(cursor=cursor), "prompts")
    names = {p.name for p in listed}
    assert {_name(path, "greet"), _name(path, "kid_hello")} <= names, names
    assert "Please greet Ada warmly." in _text(await session.client.get_prompt(_name(path, "greet"), {"name": "Ada"}))
    assert "Hello, Bo, from the kid." in _text(await session.client.get_prompt(_name(path, "kid_hello"), {"who": "Bo"}))


async def completions(world: World, path: str, era: str, session: Session) -> None:
    prompt = await session.client.complete(types.PromptReference(type="ref/prompt", name=_name(path, "greet")), {"name": "name", "value": "al"})
    assert prompt.completion.values == ["alice", "albert"]
    template = await session.client.complete(types.ResourceTemplateReference(type="ref/resource", uri="ai://srv/{+path}"), {"name": "path", "value": "md"})
    assert template.completion.values == ["mdns.md"]


async def logging(world: World, path: str, era: str, session: Session) -> None:
    session.logs.clear()
    await _call(session, path, "noisy", {"steps": 3})
    assert [log.data for log in session.logs] == ["step 1", "step 2", "step 3"]
    assert all(log.level == "info" for log in session.logs)
    if era == MODERN:  # the 2026 era's opt-in is per request: a call that asks for errors only gets none of these
        session.logs.clear()
        await _call(session, path, "noisy", {"steps": 2}, meta={types.LOG_LEVEL_META_KEY: "error"})
        assert session.logs == []


async def progress(world: World, path: str, era: str, session: Session) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, total, message))

    result = await _call(session, path, "noisy", {"steps": 3}, progress_callback=on_progress)
    assert not result.is_error, _text(result)
    assert [message for _, _, message in seen] == ["step 1", "step 2", "step 3"]


async def cancellation(world: World, path: str, era: str, session: Session) -> None:
    tag = f"{path}-{era}"
    with pytest.raises(MCPError):
        await _call(session, path, "sleepy", {"tag": tag}, read_timeout_seconds=0.5)
    await wait_until(lambda: tag in world.probe.cancelled, f"srv's tool saw the {tag} call cancelled", 10)


async def list_changed(world: World, path: str, era: str, session: Session) -> None:
    tag = uuid.uuid4().hex[:8]
    wanted = {"tools": f"grown_{tag}", "prompts": f"grown_{tag}", "resources": f"ai://srv/@kid/kid://grown/{tag}"}
    tools_offered = path != "two_hops"  # peers offer only their direct peers' tools: no new tool two hops away
    if era == MODERN:
        async with session.client.listen(tools_list_changed=True, prompts_list_changed=True, resources_list_changed=True) as changes:
            await world.admin.call_tool("grow", {"tag": tag})
            heard: set[type] = set()
            events = {PromptsListChanged, ResourcesListChanged} | ({ToolsListChanged} if tools_offered else set())
            with anyio.fail_after(15):
                async for change in changes:
                    heard.add(type(change))
                    if heard >= events:
                        break
    else:
        kinds = (types.PromptListChangedNotification, types.ResourceListChangedNotification) + ((types.ToolListChangedNotification,) if tools_offered else ())
        before = len(session.notices)
        await world.admin.call_tool("grow", {"tag": tag})
        await wait_until(lambda: all(any(isinstance(n, kind) for n in session.notices[before:]) for kind in kinds), "the list_changed notifications", 15)
    if tools_offered:
        assert _name(path, wanted["tools"]) in {t.name for t in (await session.client.list_tools()).tools}
    prompt_names, _pages = await _all_pages(lambda cursor: session.client.list_prompts(cursor=cursor), "prompts")
    assert _name(path, wanted["prompts"]) in {p.name for p in prompt_names}
    resource_uris, _pages = await _all_pages(lambda cursor: session.client.list_resources(cursor=cursor), "resources")
    assert wanted["resources"] in {r.uri for r in resource_uris}


async def elicitation(world: World, path: str, era: str, session: Session) -> None:
    """echo's `ask` asks the user; the question reaches this client and its answer the tool
    (`test_elicitation_paths.py` has the declined, refused and deadline cases)."""
    result = await _call(session, path, "ask", {"question": "Favourite colour?"})
    assert not result.is_error, _text(result)
    assert _text(result) == "blue"


FEATURES: dict[str, Callable[[World, str, str, Session], Awaitable[None]]] = {
    f.__name__: f for f in (tools, resources, templates, prompts, completions, elicitation, logging, progress, cancellation, list_changed)
}
"""feature name -> check(world, path, era, session): asserts, or skips with the spec's reason."""


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("feature", FEATURES)
async def test_every_feature_works_on_every_path_in_both_eras(world: World, feature: str, path: str, era: str) -> None:
    with anyio.fail_after(30):
        await FEATURES[feature](world, path, era, world.sessions[path, era])


def test_the_matrix_is_the_readme_table() -> None:
    """The README's table lists every feature and path of this matrix."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("## The whole protocol", 1)[1]
    for feature in FEATURES:
        assert f"| {feature} |" in section, feature
