"""The forwarder's HTTP/1.1 pool against real servers on loopback: uvicorn apps, and raw sockets for peers that misbehave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from federation.http1 import ConnectionPool, PoolTimeout, ReadTimeout, Response, Timeouts, TooLarge, Unreachable
from federation.listen import serve_app
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

QUICK = Timeouts(connect=5, read=5, pool=5)


def new_pool(**limits: Any) -> ConnectionPool:
    return ConnectionPool(**({"max_per_origin": 8, "max_idle_per_origin": 8, "keepalive_expiry": 30.0} | limits))


async def post(pool: ConnectionPool, url: str, body: bytes = b"{}", timeouts: Timeouts = QUICK) -> tuple[int, bytes]:
    async with pool.stream(b"POST", url, [(b"content-type", b"application/json")], body, timeouts) as response:
        return response.status, await read_all(response, timeouts.read)


async def read_all(response: Response, timeout: float) -> bytes:
    return b"".join([chunk async for chunk in response.body(timeout)])


class Recorder:
    """An ASGI app that answers `client port:body`, optionally after `gate` opens; counts requests and disconnects."""

    def __init__(self) -> None:
        self.requests = 0
        self.gate: anyio.Event | None = None
        self.disconnected = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests += 1
        if self.gate is not None:
            await self.gate.wait()
        answer = f"{scope['client'][1]}:".encode() + body
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


async def test_sequential_requests_share_one_kept_alive_connection() -> None:
    app = Recorder()
    pool = new_pool()
    async with serve_app(app) as url:
        answers = [await post(pool, url + "/mcp", f'{{"n":{n}}}'.encode()) for n in range(5)]
        await pool.aclose()
    ports = {body.split(b":")[0] for _, body in answers}
    assert [status for status, _ in answers] == [200] * 5
    assert [body.split(b":", 1)[1] for _, body in answers] == [f'{{"n":{n}}}'.encode() for n in range(5)]
    assert len(ports) == 1, f"each request opened its own connection: {ports}"


async def test_calls_beyond_the_connection_cap_queue_and_are_all_answered() -> None:
    app = Recorder()
    app.gate = anyio.Event()
    pool = new_pool(max_per_origin=2)
    answers: list[int] = []
    async with serve_app(app) as url:

        async def one() -> None:
            answers.append((await post(pool, url))[0])

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(one)
            with anyio.fail_after(5):
                while app.requests < 2:
                    await anyio.sleep(0.01)
            await anyio.sleep(0.2)
            assert app.requests == 2, "only two connections may be open at once; the rest wait"
            app.gate.set()
        await pool.aclose()
    assert answers == [200] * 5


async def test_a_call_that_waits_past_its_pool_deadline_is_told_the_peer_is_busy() -> None:
    app = Recorder()
    app.gate = anyio.Event()
    pool = new_pool(max_per_origin=1)
    async with serve_app(app) as url, anyio.create_task_group() as group:
        group.start_soon(post, pool, url)
        with anyio.fail_after(5):
            while app.requests < 1:
                await anyio.sleep(0.01)
        with pytest.raises(PoolTimeout, match="all 1 connections stayed busy"):
            await post(pool, url, timeouts=Timeouts(connect=5, read=5, pool=0.3))
        app.gate.set()
    await pool.aclose()


@asynccontextmanager
async def raw_server(handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> AsyncIterator[str]:
    """A TCP server on loopback that runs `handle` per connection: a peer that speaks whatever the test wants."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return await reader.readexactly(length)


OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


async def test_a_kept_alive_connection_the_peer_closed_is_not_used_again() -> None:
    served: list[bytes] = []

    async def answer_once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(await read_request(reader))
        writer.write(OK)  # says nothing of closing: the pool keeps the connection
        await writer.drain()
        writer.close()

    pool = new_pool()
    async with raw_server(answer_once_then_close) as url:
        assert await post(pool, url, b'{"n":1}') == (200, b"{}")
        await anyio.sleep(0.1)  # the close reaches the pool's idle connection
        assert await post(pool, url, b'{"n":2}') == (200, b"{}")
    await pool.aclose()
    assert served == [b'{"n":1}', b'{"n":2}']


async def test_an_idle_connection_is_closed_when_it_expires_though_the_pool_is_not_used_again() -> None:
    """A peer that fetched a card once must not hold the socket until the other side's keep-alive ends."""
    closed = anyio.Event()

    async def answer_then_wait_for_the_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        await reader.read()  # EOF: the client closed its end
        closed.set()
        writer.close()

    pool = new_pool(keepalive_expiry=0.2)
    async with raw_server(answer_then_wait_for_the_close) as url:
        assert await post(pool, url) == (200, b"{}")
        with anyio.fail_after(5):
            await closed.wait()
        await wait_until(lambda: not pool._origins, "the origin with no connection left forgotten")  # the pool stays small
    await pool.aclose()


async def test_a_silent_peer_is_a_read_timeout() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    pool = new_pool()
    async with raw_server(never_answer) as url:
        with anyio.fail_after(5), pytest.raises(ReadTimeout, match=r"no answer for 0\.3 s"):
            await post(pool, url, timeouts=Timeouts(connect=5, read=0.3, pool=5))
    await pool.aclose()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not valid HTTP/1.1"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial", "closed before the answer was complete"),
        (b"", "closed before the answer was complete"),
    ],
    ids=["not-http", "closed-mid-body", "closed-at-once"],
)
async def test_a_peer_that_breaks_the_answer_is_unreachable_with_the_reason(answer: bytes, error: str) -> None:
    async def misbehave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    pool = new_pool()
    async with raw_server(misbehave) as url:
        with anyio.fail_after(5), pytest.raises(Unreachable, match=error):
            await post(pool, url)
    await pool.aclose()


async def test_nothing_listening_is_unreachable() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with raw_server(answer) as url:
        pass  # the port is closed again
    with pytest.raises(Unreachable, match=r"could not connect to 127\.0\.0\.1"):
        await post(new_pool(), url)


async def test_a_call_cancelled_mid_answer_closes_its_connection_and_the_next_call_gets_a_whole_answer() -> None:
    stream_started = anyio.Event()
    app = Recorder()

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/stream":
            await app(scope, receive, send)
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"event: message\ndata: 1\n\n", "more_body": True})
        stream_started.set()
        while (await receive())["type"] != "http.disconnect":
            pass
        app.disconnected.set()

    pool = new_pool()
    async with serve_app(streaming) as url:
        with anyio.move_on_after(0.5):
            async with pool.stream(b"POST", url + "/stream", [], b"{}", QUICK) as response:
                async for _chunk in response.body(5):
                    pass
        with anyio.fail_after(5):
            await app.disconnected.wait()  # the server saw the caller go: the connection was closed, not pooled
        status, body = await post(pool, url + "/mcp", b"next")
        await pool.aclose()
    assert status == 200 and body.endswith(b":next")


async def test_a_large_answer_read_slowly_arrives_whole() -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: reading pauses while the caller has not taken it

    async def large(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(big)).encode())]})
        for start in range(0, len(big), 65536):
            await send({"type": "http.response.body", "body": big[start : start + 65536], "more_body": start + 65536 < len(big)})

    pool = new_pool()
    async with serve_app(large) as url:
        received = bytearray()
        async with pool.stream(b"POST", url, [], b"{}", QUICK) as response:
            async for chunk in response.body(5):
                received += chunk
                await anyio.sleep(0.001)
        assert bytes(received) == big
        assert await post(pool, url) == (200, big), "the connection is reused after a paused answer"
        await pool.aclose()


async def test_a_whole_answer_is_fetched_within_its_limit_and_refused_past_it() -> None:
    app = Recorder()
    pool = new_pool()
    async with serve_app(app) as url:
        status, body = await pool.fetch(b"GET", url + "/health", [], QUICK, limit=100)
        _, echoed = await pool.fetch(b"POST", url + "/mesh/proof", [(b"content-type", b"application/json")], QUICK, limit=100, body=b'{"step":1}')
        with pytest.raises(TooLarge, match="sent more than 3 bytes"):
            await pool.fetch(b"GET", url + "/health", [], QUICK, limit=3)
        await pool.aclose()
    assert status == 200 and body.endswith(b":")  # the recorder answers `port:` and the (empty) body
    assert echoed.split(b":", 1)[1] == b'{"step":1}'


async def test_a_connection_to_a_peer_dropped_mid_call_is_closed_when_the_call_ends() -> None:
    answer = asyncio.Event()
    closed = asyncio.Event()

    async def slow_then_wait_for_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await answer.wait()
        writer.write(OK)  # keep-alive: only the client can end this connection now
        await writer.drain()
        if not await reader.read():
            closed.set()

    pool = new_pool()
    async with raw_server(slow_then_wait_for_close) as url, anyio.create_task_group() as group:
        group.start_soon(post, pool, url)
        await anyio.sleep(0.2)
        pool.drop(url)  # the peer is gone from the table while a call to it is in flight
        answer.set()
        with anyio.fail_after(5):
            await closed.wait()
    await pool.aclose()
