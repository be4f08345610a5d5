"""The tunnel's wire format, shared by the relay and the peer's relay link.

Every tunnel message is one binary WebSocket message:

    kind: u8 | stream: u32 big-endian | payload

Stream 0 carries CONTROL messages (JSON, below). Each relayed HTTP request is
one stream, numbered by the relay (1, 2, 3, ...):

    OPEN    relay→peer  payload = head length u32 | head JSON (`RequestHead`) | whole request body
    HEAD    peer→relay  `ResponseHead` JSON (status, headers)
    DATA    peer→relay  a piece of the response body
    END     peer→relay  empty: the response is complete
    RESET   both ways   `Reset` JSON: abort the stream (client left, peer failed, limit hit)
    CREDIT  relay→peer  u32: the client consumed this many more body bytes

Flow control is per stream, HTTP/2-style: a peer may have at most `window`
unacknowledged DATA bytes in flight on a stream; the relay grants CREDIT as
the HTTP client reads. So a slow client stalls only its own stream, and a
relay never buffers more than `window` bytes per stream.

Handshake (CONTROL, stream 0): the WebSocket upgrade carries
`Authorization: Bearer <mesh secret>`; the relay sends `Challenge` (random
nonce + its limits); the peer answers `Auth` (id, public key, Ed25519
signature of `challenge_message(nonce)`), then `Publish` (its signed card,
again whenever the card's digest changes); the relay answers `Welcome` once
and `Refused` (then closes) on any failure. Text messages, unknown kinds,
truncated headers and oversized messages are protocol errors that close the
tunnel with a `Refused` saying which.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

__all__ = [
    "Auth",
    "Challenge",
    "Control",
    "Frame",
    "FrameError",
    "Kind",
    "Limits",
    "Publish",
    "Refused",
    "RequestHead",
    "Reset",
    "ResponseHead",
    "Welcome",
    "challenge_message",
    "decode",
    "encode",
    "encode_control",
    "encode_credit",
    "encode_open",
    "parse_control",
    "parse_credit",
    "parse_model",
    "parse_open",
]

_HEADER = struct.Struct(">BI")
_U32 = struct.Struct(">I")
_CHALLENGE_DOMAIN = b"mcpfed-relay-auth/1\n"


class FrameError(ValueError):
    """A tunnel message that breaks the protocol; the tunnel closes with this message."""


class Kind(IntEnum):
    CONTROL = 0
    OPEN = 1
    HEAD = 2
    DATA = 3
    END = 4
    RESET = 5
    CREDIT = 6


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    stream: int
    payload: bytes


def encode(kind: Kind, stream: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, stream) + payload


def decode(message: bytes | str, *, max_bytes: int) -> Frame:
    """Parse one tunnel message; FrameError says what is wrong with a bad one."""
    if isinstance(message, str):
        raise FrameError("text WebSocket messages are not part of the tunnel protocol (frames are binary)")
    if len(message) > max_bytes:
        raise FrameError(f"frame of {len(message)} bytes exceeds the limit of {max_bytes} bytes (max_frame_bytes)")
    if len(message) < _HEADER.size:
        raise FrameError(f"frame of {len(message)} bytes is shorter than the {_HEADER.size}-byte header")
    kind, stream = _HEADER.unpack_from(message)
    try:
        parsed_kind = Kind(kind)
    except ValueError:
        raise FrameError(f"unknown frame kind {kind}") from None
    if (parsed_kind is Kind.CONTROL) != (stream == 0):
        raise FrameError(f"{parsed_kind.name} frame on stream {stream}: control uses stream 0, requests use streams ≥ 1")
    return Frame(parsed_kind, stream, bytes(message[_HEADER.size :]))


# -- control messages (stream 0) ----------------------------------------------
class Limits(BaseModel):
    """What the relay enforces, told to the peer so both sides name the same numbers."""

    max_request_bytes: int
    max_streams: int
    max_frame_bytes: int
    window: int


class Challenge(BaseModel):
    type: Literal["challenge"] = "challenge"
    nonce: str = Field(description="hex; the peer signs challenge_message(nonce)")
    limits: Limits


class Auth(BaseModel):
    type: Literal["auth"] = "auth"
    peer_id: str
    pubkey: str = Field(description="base64 raw Ed25519 public key")
    signature: str = Field(description="base64 signature of challenge_message(nonce)")
    max_request_bytes: int | None = Field(default=None, ge=1, description="the peer's own body limit; the tunnel uses the smaller")


class Publish(BaseModel):
    type: Literal["publish"] = "publish"
    card: dict[str, Any] = Field(
        description="the signed card's JSON object: the relay checks it (`check_card`) and passes it on as sent, "
        "so fields a newer version added, which this one does not parse, still verify downstream"
    )


class Welcome(BaseModel):
    type: Literal["welcome"] = "welcome"
    path: str = Field(description="where the relay serves this peer, e.g. /p/<id>/mcp")


class Refused(BaseModel):
    type: Literal["refused"] = "refused"
    message: str


Control = Annotated[Challenge | Auth | Publish | Welcome | Refused, Field(discriminator="type")]
_CONTROL: TypeAdapter[Control] = TypeAdapter(Control)


def challenge_message(nonce: str) -> bytes:
    """What the peer signs: domain-separated so the signature is useless anywhere else."""
    return _CHALLENGE_DOMAIN + nonce.encode("ascii")


def encode_control(message: BaseModel) -> bytes:
    return encode(Kind.CONTROL, 0, message.model_dump_json().encode("utf-8"))


def parse_control(frame: Frame) -> Control:
    if frame.kind is not Kind.CONTROL:
        raise FrameError(f"expected a control frame, got {frame.kind.name} on stream {frame.stream}")
    try:
        return _CONTROL.validate_json(frame.payload)
    except ValidationError as exc:
        raise FrameError(f"bad control message: {exc.errors()[0]['msg']}") from None


# -- request streams ----------------------------------------------------------
class RequestHead(BaseModel):
    method: str = Field(max_length=16)
    path: str = Field(description="path on the peer, e.g. /mcp")
    query: str = ""
    headers: list[tuple[str, str]] = Field(default_factory=list)


class ResponseHead(BaseModel):
    status: int = Field(ge=100, le=599)
    headers: list[tuple[str, str]] = Field(default_factory=list)


class Reset(BaseModel):
    message: str


def encode_open(stream: int, head: RequestHead, body: bytes) -> bytes:
    raw = head.model_dump_json().encode("utf-8")
    return encode(Kind.OPEN, stream, _U32.pack(len(raw)) + raw + body)


def parse_open(frame: Frame) -> tuple[RequestHead, bytes]:
    if len(frame.payload) < _U32.size:
        raise FrameError("OPEN frame too short for its head length")
    (length,) = _U32.unpack_from(frame.payload)
    raw = frame.payload[_U32.size : _U32.size + length]
    if len(raw) != length:
        raise FrameError(f"OPEN frame announces a {length}-byte head but carries {len(raw)}")
    try:
        head = RequestHead.model_validate_json(raw)
    except ValidationError as exc:
        raise FrameError(f"bad OPEN head: {exc.errors()[0]['msg']}") from None
    return head, frame.payload[_U32.size + length :]


def encode_credit(stream: int, amount: int) -> bytes:
    return encode(Kind.CREDIT, stream, _U32.pack(amount))


def parse_credit(frame: Frame) -> int:
    if len(frame.payload) != _U32.size:
        raise FrameError(f"CREDIT frame carries {len(frame.payload)} bytes instead of 4")
    amount: int = _U32.unpack(frame.payload)[0]
    return amount


_Payload = TypeVar("_Payload", ResponseHead, Reset)


def parse_model(frame: Frame, model: type[_Payload]) -> _Payload:
    """HEAD and RESET payloads."""
    try:
        return model.model_validate_json(frame.payload)
    except ValidationError as exc:
        raise FrameError(f"bad {frame.kind.name} payload: {exc.errors()[0]['msg']}") from None
