"""Helpers for the relay tests: a test mesh, relays in-process or as killable processes, raw tunnels."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from websockets.asyncio.client import ClientConnection, connect

from federation.card import PeerCard, sign_card
from federation.const import PEERS_PATH, TUNNEL_PATH
from federation.identity import Identity
from federation.membership import MeshCredentials
from federation.relay.frames import Auth, Challenge, Publish, challenge_message, decode, encode_control, parse_control
from tests.support.paths import REPO
from tests.support.waiting import wait_until

MESH = MeshCredentials(id="testmesh0001", name="test", secret="test-mesh-secret-0123456789abcdef")
AUTH = {"Authorization": f"Bearer {MESH.secret}"}
MESH_FIELDS: dict[str, Any] = {"mesh": MESH.id, "mesh_name": MESH.name, "mesh_secret": MESH.secret}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_attached(relay_url: str, peer_id: str, *, timeout: float = 10.0, headers: dict[str, str] = AUTH) -> None:
    """Until the relay lists `peer_id` as attached to it (liveness bound `timeout`)."""
    async with httpx.AsyncClient(headers=headers, timeout=2) as http:

        async def attached() -> bool:
            try:
                listing = (await http.get(relay_url + PEERS_PATH)).json()
                return any(e["here"] and e["card"]["id"] == peer_id for e in listing["peers"])
            except (httpx.HTTPError, ValueError, KeyError):
                return False

        await wait_until(attached, f"{peer_id} attached to the relay at {relay_url}", timeout)


@asynccontextmanager
async def relay_process(port: int, home: Path, *extra: str) -> AsyncIterator[subprocess.Popen[bytes]]:
    """`python -m federation.cli relay --port PORT` with the test mesh; killed (SIGKILL) on exit if still alive."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "mesh.json").write_text(MESH.model_dump_json())
    env = {**os.environ, "MCPFED_HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "federation.cli", "relay", "--port", str(port), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_healthy(f"http://127.0.0.1:{port}")
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


async def wait_healthy(url: str, timeout: float = 15.0) -> None:
    """Until `url` answers its health check (a started relay process)."""
    async with httpx.AsyncClient(timeout=1) as http:

        async def healthy() -> bool:
            try:
                return (await http.get(url + "/health")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(healthy, f"{url} healthy", timeout)


async def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL, then reap it off the event loop (the loop may be serving the call that asked for the kill)."""
    process.send_signal(signal.SIGKILL)
    await anyio.to_thread.run_sync(process.wait, 10)


def card_for(identity: Identity, name: str = "raw", mesh: str | None = MESH.id) -> PeerCard:
    return sign_card(PeerCard(id="", name=name, pubkey="", mesh=mesh), identity)


def sign_auth(identity: Identity, nonce: str, *, claim: str | None = None) -> Auth:
    return Auth(
        peer_id=claim or identity.peer_id,
        pubkey=base64.b64encode(identity.public_key).decode(),
        signature=base64.b64encode(identity.sign(challenge_message(nonce))).decode(),
    )


@asynccontextmanager
async def raw_tunnel(relay_url: str, *, headers: dict[str, str] = AUTH, **options: Any) -> AsyncIterator[ClientConnection]:
    """A bare WebSocket to the relay's tunnel endpoint, for speaking the protocol by hand."""
    async with connect(relay_url.replace("http://", "ws://") + TUNNEL_PATH, additional_headers=headers, compression=None, **options) as ws:
        yield ws


async def challenge(ws: ClientConnection) -> Challenge:
    message = parse_control(decode(await ws.recv(), max_bytes=1 << 20))
    assert isinstance(message, Challenge)
    return message


async def attach_by_hand(ws: ClientConnection, identity: Identity, card: dict[str, Any] | None = None) -> None:
    """The honest handshake, done by hand (then the caller misbehaves); `card` is the JSON published (default: `card_for`'s)."""
    nonce = (await challenge(ws)).nonce
    await ws.send(encode_control(sign_auth(identity, nonce)))
    await ws.send(encode_control(Publish(card=card or card_for(identity).model_dump(mode="json"))))
    welcome = parse_control(decode(await ws.recv(), max_bytes=1 << 20))
    assert welcome.type == "welcome", welcome


async def refusal(ws: ClientConnection) -> tuple[str, int | None]:
    """The relay's Refused message and close code, once it closes the tunnel."""
    with anyio.fail_after(10):
        message = parse_control(decode(await ws.recv(), max_bytes=1 << 20))
        assert message.type == "refused", message
        await ws.wait_closed()
    return message.message, ws.close_code  # type: ignore[union-attr]
