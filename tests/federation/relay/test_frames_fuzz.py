"""Tunnel frames from a hostile relay or peer: any bytes decode to a frame or a `FrameError`, never a crash, in bounded memory."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from federation.relay.frames import (
    Frame,
    FrameError,
    Kind,
    Reset,
    ResponseHead,
    decode,
    encode,
    encode_open,
    parse_control,
    parse_credit,
    parse_model,
    parse_open,
)
from tests.support.fuzzing import FUZZ, JSON, peak_bytes

MAX_FRAME = 4096


def _read(frame: Frame) -> object:
    """What the tunnel does with a frame of each kind: every payload parser a received frame can reach."""
    if frame.kind is Kind.CONTROL:
        return parse_control(frame)
    if frame.kind is Kind.OPEN:
        return parse_open(frame)
    if frame.kind is Kind.CREDIT:
        return parse_credit(frame)
    if frame.kind is Kind.HEAD:
        return parse_model(frame, ResponseHead)
    if frame.kind is Kind.RESET:
        return parse_model(frame, Reset)
    return frame.payload


@FUZZ
@given(message=st.binary(max_size=MAX_FRAME + 8) | st.text(max_size=64))
def test_any_message_is_a_frame_or_a_frame_error(message: bytes | str) -> None:
    try:
        _read(decode(message, max_bytes=MAX_FRAME))
    except FrameError as exc:
        assert str(exc)


FIELDS = ["type", "nonce", "limits", "card", "peer_id", "pubkey", "signature", "message", "path", "status", "headers", "method", "query"]
MESSAGE_LIKE = st.dictionaries(st.sampled_from(FIELDS), JSON | st.sampled_from(["challenge", "auth", "publish", "welcome", "refused"]), max_size=6)
"""JSON objects with the fields and type names of real messages, so the parsers get past the first check."""


@FUZZ
@given(kind=st.sampled_from(Kind), stream=st.integers(1, 2**32 - 1), payload=st.binary(max_size=512) | (JSON | MESSAGE_LIKE).map(lambda v: json.dumps(v).encode()))
def test_any_payload_of_each_kind_parses_or_is_a_frame_error(kind: Kind, stream: int, payload: bytes) -> None:
    stream = 0 if kind is Kind.CONTROL else stream
    frame = decode(encode(kind, stream, payload), max_bytes=MAX_FRAME)
    assert frame == Frame(kind, stream, payload)
    try:
        _read(frame)
    except FrameError as exc:
        assert str(exc)


@FUZZ
@given(head_length=st.integers(0, 2**32 - 1), rest=st.binary(max_size=256))
def test_an_open_frame_announcing_any_head_length_is_refused_or_read(head_length: int, rest: bytes) -> None:
    frame = Frame(Kind.OPEN, 1, head_length.to_bytes(4, "big") + rest)
    try:
        head, body = parse_open(frame)
    except FrameError as exc:
        assert str(exc)
    else:
        assert encode_open(1, head, body)


def test_a_frame_at_the_limit_costs_about_its_own_size_and_one_past_it_nothing() -> None:
    limit = 4 << 20
    at_limit = encode(Kind.DATA, 7, bytes(limit - 5))
    assert peak_bytes(lambda: decode(at_limit, max_bytes=limit)) < 2 * limit
    past_limit = encode(Kind.DATA, 7, bytes(limit))
    assert peak_bytes(lambda: decode(past_limit, max_bytes=limit), FrameError) < 64 << 10


def test_an_open_frame_announcing_4_gib_of_head_allocates_nothing_for_it() -> None:
    frame = Frame(Kind.OPEN, 1, (2**32 - 1).to_bytes(4, "big") + bytes(1 << 20))
    assert peak_bytes(lambda: parse_open(frame), FrameError) < 2 << 20
