"""`fetch_card` on discovery's lean HTTP/1.1 pool: each way a card fetch or a proof goes wrong keeps its reason.

Real servers on loopback: a uvicorn app answering whatever the test says,
a raw socket that answers something that is not HTTP, a port with nobody.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from federation.const import MAX_CARD_BYTES
from federation.discovery.admission import Member, Rejected, discovery_client, fetch_card
from federation.identity import Identity
from federation.listen import serve_app
from federation.proof import MAX_PROOF_BODY, MeshKeys

pytestmark = pytest.mark.anyio

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MEMBER = Member(Identity.generate().peer_id, MeshKeys("card-fetch-test-secret-0123456789"))


def answering(status: int, body: bytes) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app giving every request the same answer."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize(
    ("member", "status", "body", "reason", "retry", "says"),
    [
        pytest.param(None, 200, b"x" * (MAX_CARD_BYTES + 1), "bad-response", False, "not a card", id="card-too-large"),
        pytest.param(None, 503, b"busy", "bad-response", True, "answered HTTP 503", id="card-refused"),
        pytest.param(None, 200, b"{}", "bad-card", False, "", id="card-not-signed"),
        pytest.param(MEMBER, 200, b"x" * (MAX_PROOF_BODY + 1), "bad-response", False, "answered more than", id="proof-too-large"),
        pytest.param(MEMBER, 401, b"{}", "no-proof", True, "answered HTTP 401", id="proof-refused"),
        pytest.param(MEMBER, 200, b"[]", "bad-response", False, "JSON object", id="proof-not-an-object"),
    ],
)
async def test_a_bad_answer_is_rejected_with_its_reason(member: Member | None, status: int, body: bytes, reason: str, retry: bool, says: str) -> None:
    async with serve_app(answering(status, body)) as url, discovery_client() as pool:
        with pytest.raises(Rejected) as rejected:
            await fetch_card(pool, url + "/mcp", mesh=None, member=member)
    assert (rejected.value.reason, rejected.value.retry) == (reason, retry), rejected.value
    assert says in str(rejected.value)


async def test_nobody_there_and_an_answer_that_is_not_http_are_unreachable_and_retried() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]

    async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with discovery_client() as pool:
            for url in (f"http://127.0.0.1:{closed_port}/mcp", f"http://127.0.0.1:{port}/mcp"):
                for member in (None, MEMBER):
                    with pytest.raises(Rejected) as rejected:
                        await fetch_card(pool, url, mesh=None, member=member)
                    assert (rejected.value.reason, rejected.value.retry) == ("unreachable", True), rejected.value
    finally:
        server.close()
        await server.wait_closed()
