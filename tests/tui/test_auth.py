"""A mesh that wants its secret: the TUI says how to give it, and sends it once given."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from federation.listen import serve_app
from federation.membership import auth_headers
from federation.node import Node
from tests.support.tui import app_for
from tests.support.waiting import wait_until
from tui.observer import mesh_settings
from tui.widgets.answer_pane import AnswerPane
from tui.widgets.connection_bar import ConnectionBar
from tui.widgets.peers_table import PeersTable

pytestmark = pytest.mark.anyio

SECRET = "s3cret-mesh"


@asynccontextmanager
async def gated(upstream: str) -> AsyncIterator[str]:
    """A door that answers 401 without `Bearer SECRET`; with it, passes GETs through to a real node (streaming)."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=60.0)) as client:

        async def forward(request: Request) -> Response:
            if request.headers.get("authorization") != f"Bearer {SECRET}":
                return JSONResponse({"error": "mesh credential required"}, status_code=401)
            if request.method != "GET":
                return JSONResponse({"error": "this door only passes GETs"}, status_code=405)
            response = await client.send(client.build_request("GET", upstream + request.url.path), stream=True)

            async def body() -> AsyncIterator[bytes]:
                try:
                    async for chunk in response.aiter_raw():
                        yield chunk
                finally:
                    await response.aclose()

            return StreamingResponse(body(), status_code=response.status_code, media_type=response.headers.get("content-type"))

        async with serve_app(Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST", "DELETE"])])) as url:
            yield url


async def test_a_node_that_wants_the_secret_tells_the_user_how_to_pass_it(start_node: Callable[..., AbstractAsyncContextManager[Node]]) -> None:
    async with start_node(name="locked") as node, gated(node.url) as url:
        app = app_for(url)
        async with app.run_test(size=(100, 30)) as pilot:
            bar = app.query_one(ConnectionBar)
            await wait_until(lambda: "--token" in str(bar.render()), "the banner naming --token")
            assert "401" in str(bar.render())
            await pilot.press("slash", *"hello", "enter")
            pane = app.query_one(AnswerPane)
            await wait_until(lambda: pane.failed, "the prompt failing")
            assert "--token" in pane.status and "401" in pane.status


async def test_with_the_token_the_tui_gets_through(start_node: Callable[..., AbstractAsyncContextManager[Node]]) -> None:
    async with start_node(name="locked") as node, gated(node.url) as url:
        app = app_for(url, headers=auth_headers(mesh_settings(SECRET)))
        async with app.run_test(size=(100, 30)):
            table = app.query_one(PeersTable)
            await wait_until(lambda: app.connection.phase == "connected" and table.row_count == 1, "connected through the gate")
            assert str(table.get_row_at(0)[0]) == "locked"
