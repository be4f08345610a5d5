"""Admitting a peer's tunnel: the signed challenge and the card checks.

The mesh credential was already checked on the WebSocket upgrade
(`MeshGuard`). Here the peer proves it holds the key its id is derived from,
and every card it publishes must be signed by that same key, carry that id
and name this relay's mesh: a card for peer A over B's tunnel is refused.
"""

from __future__ import annotations

import binascii
import secrets
from typing import Any, TypeVar

import anyio
from starlette.websockets import WebSocket

from federation.card import verify_card
from federation.const import RELAY_CONNECT_SECONDS
from federation.errors import CardError
from federation.identity import b64decode_exact, peer_id_for, verify_signature
from federation.relay.frames import (
    Auth,
    Challenge,
    Frame,
    FrameError,
    Limits,
    Publish,
    challenge_message,
    decode,
    encode_control,
    parse_control,
)
from federation.relay.received import ReceivedCard

__all__ = ["Refusal", "admit", "check_card", "receive_frame"]

_Message = TypeVar("_Message", Auth, Publish)


class Refusal(Exception):
    """Why a tunnel is refused or closed; `code` is the WebSocket close code."""

    def __init__(self, message: str, code: int = 1008) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    @classmethod
    def from_frame_error(cls, exc: FrameError) -> Refusal:
        return cls(f"tunnel protocol error: {exc}", 1009 if "exceeds the limit" in str(exc) else 1002)


async def receive_frame(websocket: WebSocket, max_bytes: int) -> Frame | None:
    """The next frame, or None once the peer disconnected; FrameError for a bad one."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    data = message.get("bytes")
    return decode(data if data is not None else message.get("text", ""), max_bytes=max_bytes)


async def _expect(websocket: WebSocket, kind: type[_Message], max_bytes: int) -> _Message:
    try:
        frame = await receive_frame(websocket, max_bytes)
        if frame is None:
            raise Refusal("the peer disconnected during the handshake")
        message = parse_control(frame)
    except FrameError as exc:
        raise Refusal.from_frame_error(exc) from None
    if not isinstance(message, kind):
        raise Refusal(f"expected a {kind.model_fields['type'].default!r} message, got {message.type!r}", 1002)
    return message


def _check_auth(auth: Auth, nonce: str) -> None:
    try:
        public_key = b64decode_exact(auth.pubkey)
        signature = b64decode_exact(auth.signature)
    except (binascii.Error, ValueError):
        raise Refusal("the auth message's key or signature is not base64") from None
    if peer_id_for(public_key) != auth.peer_id:
        raise Refusal(f"peer id {auth.peer_id!r} is not derived from the key presented (that key's id is {peer_id_for(public_key)!r})")
    if not verify_signature(public_key, signature, challenge_message(nonce)):
        raise Refusal(f"the challenge signature does not verify for peer {auth.peer_id!r}: the peer does not hold that key")


def check_card(card: dict[str, Any], peer_id: str, mesh: str | None) -> ReceivedCard:
    """A card may only be published by its own peer, for this relay's mesh; kept as sent, to be passed on so."""
    if card.get("id") != peer_id:
        raise Refusal(f"card for peer {card.get('id')!r} published over the tunnel of peer {peer_id!r}: a peer may publish only its own card")
    try:
        return ReceivedCard(verify_card(card, expected_id=peer_id, mesh=mesh), card)
    except CardError as exc:
        raise Refusal(f"card refused: {exc}") from None


async def admit(websocket: WebSocket, limits: Limits, mesh: str | None) -> tuple[Auth, ReceivedCard]:
    """Run the handshake on an accepted WebSocket; Refusal says why it failed."""
    nonce = secrets.token_hex(16)
    await websocket.send_bytes(encode_control(Challenge(nonce=nonce, limits=limits)))
    try:
        with anyio.fail_after(RELAY_CONNECT_SECONDS):
            auth = await _expect(websocket, Auth, limits.max_frame_bytes)
            _check_auth(auth, nonce)
            publish = await _expect(websocket, Publish, limits.max_frame_bytes)
    except TimeoutError:
        raise Refusal(f"the handshake did not finish within {RELAY_CONNECT_SECONDS:g} s") from None
    return auth, check_card(publish.card, auth.peer_id, mesh)
