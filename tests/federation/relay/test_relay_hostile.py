"""Hostile and broken tunnels: the relay refuses them with a reason and keeps serving everyone else."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from federation.client import connect
from federation.discovery.relay import relayed_url
from federation.identity import Identity
from federation.node import Node
from federation.relay.frames import Kind, Publish, Reset, ResponseHead, decode, encode, encode_control, parse_model
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from tests.support.relay import (
    AUTH,
    MESH_FIELDS,
    attach_by_hand,
    card_for,
    challenge,
    raw_tunnel,
    refusal,
    sign_auth,
    wait_attached,
)

pytestmark = pytest.mark.anyio

_LIMITS: dict[str, Any] = {"max_frame_bytes": 64 * 1024, "max_request_bytes": 1024 * 1024, "max_streams": 16, "send_timeout": 1.0, "window": 16 * 1024}


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    async with Relay(RelaySettings(port=0, home=tmp_path / "relay", **_LIMITS, **MESH_FIELDS)) as running:
        yield running


@pytest.fixture
async def honest(make_settings: Callable[..., PeerSettings], relay: Relay) -> AsyncIterator[Node]:
    """A well-behaved peer on the same relay, to show others are unaffected."""
    async with Node(make_settings(name="honest", relays=[relay.url], **MESH_FIELDS)) as node:
        await wait_attached(relay.url, node.peer_id)
        yield node


async def assert_still_served(relay: Relay, node: Node) -> None:
    with anyio.fail_after(10):
        async with connect(relayed_url(relay.url, node.peer_id), headers=AUTH) as client:
            await client.list_tools()


async def test_peer_claiming_another_peers_id_fails_the_challenge(relay: Relay, honest: Node) -> None:
    impostor = Identity.generate()
    async with raw_tunnel(relay.url) as ws:  # someone else's id with the impostor's own key
        await ws.send(encode_control(sign_auth(impostor, (await challenge(ws)).nonce, claim=honest.peer_id)))
        message, code = await refusal(ws)
    assert f"peer id {honest.peer_id!r} is not derived from the key presented" in message and code == 1008
    victim_key = sign_auth(honest.identity, "unused")
    async with raw_tunnel(relay.url) as ws:  # the victim's id and public key, but a signature the impostor made
        auth = sign_auth(impostor, (await challenge(ws)).nonce).model_copy(update={"peer_id": honest.peer_id, "pubkey": victim_key.pubkey})
        await ws.send(encode_control(auth))
        message, code = await refusal(ws)
    assert "does not verify" in message and "does not hold that key" in message
    await assert_still_served(relay, honest)


async def test_card_for_another_peer_over_a_tunnel_is_refused(relay: Relay, honest: Node) -> None:
    sneaky = Identity.generate()
    async with raw_tunnel(relay.url) as ws:  # during the handshake
        await ws.send(encode_control(sign_auth(sneaky, (await challenge(ws)).nonce)))
        await ws.send(encode_control(Publish(card=honest.card().model_dump(mode="json"))))
        message, _ = await refusal(ws)
    assert f"card for peer {honest.peer_id!r} published over the tunnel of peer {sneaky.peer_id!r}" in message
    async with raw_tunnel(relay.url) as ws:  # and after an honest handshake
        await attach_by_hand(ws, sneaky)
        await ws.send(encode_control(Publish(card=honest.card().model_dump(mode="json"))))
        message, _ = await refusal(ws)
    assert "a peer may publish only its own card" in message
    async with raw_tunnel(relay.url) as ws:  # its own card, but for another mesh
        await ws.send(encode_control(sign_auth(sneaky, (await challenge(ws)).nonce)))
        await ws.send(encode_control(Publish(card=card_for(sneaky, mesh="someothermesh").model_dump(mode="json"))))
        message, _ = await refusal(ws)
    assert "belongs to mesh 'someothermesh'" in message
    assert relay.peer_ids == [honest.peer_id]
    await assert_still_served(relay, honest)


@pytest.mark.parametrize(
    ("frame", "reason", "code"),
    [
        ("hello", "text WebSocket messages are not part of the tunnel protocol", 1002),
        (b"\x03\x00", "shorter than the 5-byte header", 1002),
        (encode(9, 1), "unknown frame kind 9", 1002),  # type: ignore[arg-type]
        (encode(Kind.OPEN, 1, b"\x00\x00\x00\x00"), "a peer may not send OPEN frames", 1002),
        (encode(Kind.CONTROL, 0, b"{not json"), "bad control message", 1002),
        (encode(Kind.DATA, 0, b"x"), "DATA frame on stream 0", 1002),
        (b"\x03" + b"\x00" * (64 * 1024), "exceeds the limit of 65536 bytes (max_frame_bytes)", 1009),
    ],
    ids=["text", "short", "unknown-kind", "open-from-peer", "bad-json", "data-on-control", "oversized"],
)
async def test_malformed_or_oversized_frames_close_only_that_tunnel(relay: Relay, honest: Node, frame: bytes | str, reason: str, code: int) -> None:
    async with raw_tunnel(relay.url) as ws:
        await attach_by_hand(ws, Identity.generate())
        await ws.send(frame)
        message, close_code = await refusal(ws)
    assert reason in message and close_code == code
    await assert_still_served(relay, honest)


async def test_limits_are_enforced_and_named(relay: Relay, honest: Node) -> None:
    """A peer that accepts requests but never answers them: max_streams fills, then 503; oversize bodies 413."""
    silent = Identity.generate()
    async with raw_tunnel(relay.url, close_timeout=1) as ws, httpx.AsyncClient(headers=AUTH, timeout=20) as http:
        await attach_by_hand(ws, silent)
        url = relayed_url(relay.url, silent.peer_id)
        too_big = await http.post(url, content=b"x" * (1024 * 1024 + 1))
        assert too_big.status_code == 413 and "1048576 bytes (max_request_bytes)" in too_big.json()["error"]["message"]
        pending: list[httpx.Response] = []

        async def hang() -> None:
            pending.append(await http.post(url, json={}))

        async with anyio.create_task_group() as group:
            for _ in range(16):
                group.start_soon(hang)
            with anyio.fail_after(10):
                while relay._tunnels[silent.peer_id].in_flight < 16:
                    await anyio.sleep(0.02)
            full = await http.post(url, json={})
            assert full.status_code == 503 and "(max_streams=16)" in full.json()["error"]["message"]
            await assert_still_served(relay, honest)
            await ws.close()  # the silent peer leaves: its hanging requests end, clearly
        assert [r.status_code for r in pending] == [502] * 16
        assert all("disconnected" in r.json()["error"]["message"] for r in pending)


async def test_a_tunnel_that_stops_reading_is_dropped_without_stalling_others(relay: Relay, honest: Node) -> None:
    stalled = Identity.generate()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", relay.port))
    outcomes: list[tuple[int, str]] = []
    async with raw_tunnel(relay.url, sock=sock, max_queue=1, close_timeout=1) as ws, httpx.AsyncClient(headers=AUTH, timeout=30) as http:
        await attach_by_hand(ws, stalled)  # ... and from now on reads nothing

        async def flood() -> None:
            response = await http.post(relayed_url(relay.url, stalled.peer_id), content=b"x" * (1024 * 1024 - 4096))
            outcomes.append((response.status_code, response.json()["error"]["message"]))

        async def meanwhile() -> None:
            for _ in range(5):
                await assert_still_served(relay, honest)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for _ in range(12):
                    group.start_soon(flood)
                group.start_soon(meanwhile)
    assert stalled.peer_id not in relay.peer_ids
    assert {status for status, _ in outcomes} <= {502, 404}
    assert any("stopped reading for 1 s (send_timeout)" in message for _, message in outcomes)


async def _next_frame_of(ws: Any, kind: Kind) -> Any:
    """Skip frames until one of `kind` (the relay may interleave others)."""
    with anyio.fail_after(10):
        while True:
            frame = decode(await ws.recv(), max_bytes=1 << 21)
            if frame.kind is kind:
                return frame


async def test_a_peer_ignoring_flow_control_is_cut_off(relay: Relay, honest: Node) -> None:
    greedy = Identity.generate()
    failures: list[BaseException] = []
    async with raw_tunnel(relay.url) as ws, httpx.AsyncClient(headers=AUTH, timeout=20) as http:
        await attach_by_hand(ws, greedy)

        async def request() -> None:
            try:
                await http.post(relayed_url(relay.url, greedy.peer_id), json={})
            except httpx.HTTPError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(request)
            opened = await _next_frame_of(ws, Kind.OPEN)
            await ws.send(encode(Kind.HEAD, opened.stream, ResponseHead(status=200).model_dump_json().encode()))
            await ws.send(encode(Kind.DATA, opened.stream, b"x" * (20 * 1024)))  # more than the 16 KiB window
            message, code = await refusal(ws)
    assert "overran its flow-control window of 16384 bytes" in message and code == 1002
    assert len(failures) == 1, "the client must see the broken response, not hang"
    await assert_still_served(relay, honest)


async def test_a_client_that_leaves_resets_its_stream_on_the_peer(relay: Relay) -> None:
    slow = Identity.generate()
    async with raw_tunnel(relay.url) as ws, httpx.AsyncClient(headers=AUTH, timeout=20) as http:
        await attach_by_hand(ws, slow)
        async with anyio.create_task_group() as group:

            async def leave_after_the_head() -> None:
                async with http.stream("GET", relayed_url(relay.url, slow.peer_id)) as response:
                    assert response.status_code == 200  # ... and the client goes away mid-body

            group.start_soon(leave_after_the_head)
            opened = await _next_frame_of(ws, Kind.OPEN)
            await ws.send(encode(Kind.HEAD, opened.stream, ResponseHead(status=200, headers=[("content-type", "text/event-stream")]).model_dump_json().encode()))
            await ws.send(encode(Kind.DATA, opened.stream, b": still working\n\n"))
            reset = await _next_frame_of(ws, Kind.RESET)
    assert reset.stream == opened.stream
    assert "went away" in parse_model(reset, Reset).message
