"""The lend tunnel: bytes reach a lender's loopback RPC port only from a proven mesh peer, one host at a time.

The "RPC server" here is a plain TCP echo server on loopback that counts the
connections it gets: what the tunnel must protect is the port, whatever speaks on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from federation.const import LEND_PATH
from federation.listen import serve_app
from federation.membership import MeshGuard
from federation.pooled.tunnel import LendDesk, LenderTunnel, TunnelRefused
from federation.proof import MeshKeys, Tokens

pytestmark = pytest.mark.anyio

SECRET = "the-mesh-secret-for-lending-tests"
LENDER, HOST, OTHER_HOST = "l" * 16, "h" * 16, "o" * 16


@dataclass
class EchoServer:
    port: int = 0
    connections: int = 0


@asynccontextmanager
async def echo_server() -> AsyncIterator[EchoServer]:
    """A loopback TCP server that echoes, standing in for ggml's RPC server."""
    server = EchoServer()

    async def echo(stream: SocketStream) -> None:
        server.connections += 1
        async with stream:
            try:
                async for chunk in stream:
                    await stream.send(chunk)
            except anyio.BrokenResourceError:
                pass

    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener, anyio.create_task_group() as group:
        server.port = listener.extra(SocketAttribute.local_port)
        group.start_soon(listener.serve, echo)
        yield server
        group.cancel_scope.cancel()


@asynccontextmanager
async def lender(rpc: EchoServer) -> AsyncIterator[tuple[str, LendDesk]]:
    """A lender's app as a node wires it: the desk behind the mesh guard, peer tokens addressed to LENDER."""
    desk = LendDesk(lambda: rpc.port, require_proof=True)
    app = Starlette(routes=[WebSocketRoute(LEND_PATH, desk)])
    guarded = MeshGuard(app, secret=SECRET, mesh_name="test", audience=lambda scope: LENDER)
    async with serve_app(guarded) as url:
        yield url, desk


def token_of(host: str, secret: str = SECRET, audience: str = LENDER) -> dict[str, str]:
    return Tokens(MeshKeys(secret), host).headers(audience)


async def round_trip(endpoint: str, payload: bytes) -> bytes:
    host, port = endpoint.split(":")
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(payload)
        received = b""
        with anyio.fail_after(10):
            while len(received) < len(payload):
                received += await stream.receive()
        return received


async def test_bytes_round_trip_through_the_tunnel() -> None:
    async with echo_server() as rpc, lender(rpc) as (url, _), LenderTunnel(url, lambda: token_of(HOST), name="lender") as tunnel:
        payload = bytes(range(256)) * 2000  # 512 KB: several messages each way
        assert await round_trip(tunnel.endpoint, payload) == payload
        assert rpc.connections == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-the-secret"},
        token_of(HOST, secret="another-mesh-secret"),
        token_of(HOST, audience=OTHER_HOST),
        {"Authorization": f"Bearer {SECRET}"},  # a stock client's raw secret is no peer's proof
    ],
    ids=["no-credential", "wrong-bearer", "other-mesh-token", "token-for-another-peer", "raw-secret"],
)
async def test_a_stranger_is_refused_and_never_reaches_the_rpc_port(headers: dict[str, str]) -> None:
    async with echo_server() as rpc, lender(rpc) as (url, desk), LenderTunnel(url, lambda: headers, name="lender") as tunnel:
        with pytest.raises(TunnelRefused, match="HTTP 401"):
            await tunnel.probe()
        host, port = tunnel.endpoint.split(":")
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(b"hello")
            with anyio.fail_after(10), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await stream.receive()  # the host side closes what the lender refused
        assert rpc.connections == 0
        assert desk.host is None


async def test_a_second_host_is_told_the_lender_is_busy() -> None:
    async with echo_server() as rpc, lender(rpc) as (url, desk):
        async with LenderTunnel(url, lambda: token_of(HOST), name="lender") as first, LenderTunnel(url, lambda: token_of(OTHER_HOST), name="lender") as second:
            host, port = first.endpoint.split(":")
            async with await anyio.connect_tcp(host, int(port)) as attached:
                await attached.send(b"ping")
                assert await attached.receive() == b"ping"
                assert desk.host == HOST
                with pytest.raises(TunnelRefused, match=f"HTTP 409.*busy.*{HOST}"):
                    await second.probe()
                await first.probe()  # the attached host itself may reconnect (ggml probes, then loads)
            with anyio.fail_after(10):
                while desk.host is not None:
                    await anyio.sleep(0.02)
            await second.probe()  # free again once the first host left
        assert rpc.connections == 3


async def test_a_lender_that_is_not_serving_says_so() -> None:
    desk = LendDesk(lambda: None, require_proof=True)
    app = MeshGuard(Starlette(routes=[WebSocketRoute(LEND_PATH, desk)]), secret=SECRET, mesh_name="test", audience=lambda scope: LENDER)
    async with serve_app(app) as url, LenderTunnel(url, lambda: token_of(HOST), name="lender") as tunnel:
        with pytest.raises(TunnelRefused, match=r"HTTP 503.*not lending"):
            await tunnel.probe()
