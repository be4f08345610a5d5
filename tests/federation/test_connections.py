"""Connection limits below ASGI, attacked with real sockets: half-open requests time out, one address cannot hold them all."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from federation.connections import CONNECTION_LIMIT_CODE, ConnectionLimits
from federation.listen import serve_app
from federation.node import Node
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

HALF_OPEN = 50
DEADLINE = 30.0
"""Liveness bound for the server to close what it must close (the limits under test are far shorter)."""


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


@asynccontextmanager
async def _server(limits: ConnectionLimits) -> AsyncIterator[tuple[str, int]]:
    async with serve_app(Starlette(routes=[Route("/", _hello)]), limits=limits) as url:
        yield url, int(url.rsplit(":", 1)[1])


async def _read_until_closed(stream: SocketStream) -> bytes:
    """Everything the server sends before it closes the connection."""
    data = b""
    with anyio.fail_after(DEADLINE):
        try:
            while True:
                data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return data


def _error_of(response: bytes) -> dict[str, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    return json.loads(body)["error"]


async def test_half_open_connections_are_closed_after_the_header_timeout_while_a_client_is_served() -> None:
    async with _server(ConnectionLimits(header_timeout=1.0, max_per_address=0)) as (url, port):
        stalled = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(HALF_OPEN)]
        try:
            for stream in stalled[1:]:  # the first sends nothing at all
                await stream.send(b"GET / HT")
            async with httpx.AsyncClient() as client:
                assert (await client.get(url)).text == "hello"
            answers = [await _read_until_closed(stream) for stream in stalled]
        finally:
            for stream in stalled:
                await stream.aclose()
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), answers[0]
    error = _error_of(answers[-1])
    assert error["code"] == CONNECTION_LIMIT_CODE and "--header-timeout" in error["message"]


async def test_a_kept_alive_connection_that_stalls_in_its_next_request_is_closed() -> None:
    async with _server(ConnectionLimits(header_timeout=1.0, max_per_address=0)) as (_, port), await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = await stream.receive()
        assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b"hello")
        await stream.send(b"GET / HTTP/1.1\r\nHost: 127.0")
        assert (await _read_until_closed(stream)).startswith(b"HTTP/1.1 408 ")


async def test_one_address_past_the_cap_is_refused_while_another_address_is_served() -> None:
    cap = 5
    async with _server(ConnectionLimits(header_timeout=600, max_per_address=cap)) as (url, port):
        held = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(cap)]
        try:
            async with await anyio.connect_tcp("127.0.0.1", port) as one_more:
                refused = await _read_until_closed(one_more)
            assert refused.startswith(b"HTTP/1.1 503 ")
            error = _error_of(refused)
            assert error["code"] == CONNECTION_LIMIT_CODE and "--max-connections-per-address" in error["message"]

            async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")) as other:
                assert (await other.get(url)).text == "hello"

            await held.pop().aclose()

            async def served_again() -> bool:
                async with httpx.AsyncClient() as client:
                    return (await client.get(url)).status_code == 200

            await wait_until(served_again, "127.0.0.1 served again once it dropped below the cap")
        finally:
            for stream in held:
                await stream.aclose()


@pytest.mark.parametrize("kind", ["peer", "relay"])
async def test_peers_and_relays_take_the_limits_from_their_settings(
    kind: str, make_settings: Callable[..., PeerSettings], tmp_path: Path
) -> None:
    limits: dict[str, Any] = {"header_timeout": 0.5, "max_connections_per_address": 2}
    server: AbstractAsyncContextManager[Node | Relay] = (
        Node(make_settings(**limits)) if kind == "peer" else Relay(RelaySettings(port=0, home=tmp_path / "relay", **limits))
    )
    async with server as running, await anyio.connect_tcp("127.0.0.1", running.port) as first, await anyio.connect_tcp("127.0.0.1", running.port):
        async with await anyio.connect_tcp("127.0.0.1", running.port) as third:
            assert (await _read_until_closed(third)).startswith(b"HTTP/1.1 503 ")
        await first.send(b"GET /health HTTP/1.1\r\n")
        assert (await _read_until_closed(first)).startswith(b"HTTP/1.1 408 ")
