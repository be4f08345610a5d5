"""Peer cards from anywhere (mDNS neighbours, relays): any bytes or JSON verify or raise `CardError`, never crash, in bounded memory."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.card import PeerCard, sign_card, verify_card
from federation.const import MAX_CARD_BYTES
from federation.errors import CardError
from federation.identity import Identity
from tests.support.fuzzing import FUZZ, JSON, peak_bytes

IDENTITY = Identity.generate()
CARD = sign_card(PeerCard(id="", name="alice", pubkey="", mesh="home", endpoints=["http://127.0.0.1:8801/mcp"]), IDENTITY)
CARD_JSON = CARD.model_dump(mode="json")
FIELDS = sorted(CARD_JSON)


def _verified_or_refused(card: PeerCard | dict[str, Any] | bytes | str) -> PeerCard | None:
    try:
        return verify_card(card, expected_id=IDENTITY.peer_id, mesh="home")
    except CardError as exc:
        assert str(exc)
        return None


@FUZZ
@given(body=st.binary(max_size=2048) | JSON.map(json.dumps))
def test_any_body_verifies_or_raises_a_card_error(body: bytes | str) -> None:
    assert _verified_or_refused(body) is None


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(FIELDS), JSON, min_size=1, max_size=3))
def test_a_signed_card_with_any_field_replaced_is_refused_unless_unchanged(changes: dict[str, Any]) -> None:
    changed = CARD_JSON | changes
    for form in (changed, json.dumps(changed)):
        verified = _verified_or_refused(form)
        assert verified is None or verified == CARD


@FUZZ
@given(position=st.integers(0, len(CARD.model_dump_json()) - 1), byte=st.integers(0, 255))
def test_a_signed_card_with_any_byte_changed_is_refused_unless_unchanged(position: int, byte: int) -> None:
    raw = bytearray(CARD.model_dump_json().encode())
    raw[position] = byte
    verified = _verified_or_refused(bytes(raw))
    assert verified is None or verified == CARD


@pytest.mark.parametrize(
    ("body", "bound"),
    [
        pytest.param(lambda: sign_card(CARD.model_copy(update={"name": "x" * (MAX_CARD_BYTES - 1024)}), IDENTITY).model_dump_json(), 8, id="long-name"),
        pytest.param(lambda: "[" * (MAX_CARD_BYTES // 2) + "]" * (MAX_CARD_BYTES // 2), 4, id="deep-nesting"),
        pytest.param(lambda: json.dumps(CARD_JSON | {"tools": [{"name": "t"}] * (MAX_CARD_BYTES // 14)}, separators=(",", ":")), 64, id="many-tools"),
    ],
)
def test_a_card_of_the_largest_size_fetched_costs_a_bounded_multiple_of_it(body: Callable[[], str], bound: int) -> None:
    """Discovery reads at most MAX_CARD_BYTES of a card. Many tiny tools cost most (about 50x: one object per tool,
    as the card sets no cap on its lists); the bound says how much a hostile neighbour can make a peer allocate."""
    raw = body()
    assert len(raw) <= MAX_CARD_BYTES
    assert peak_bytes(lambda: verify_card(raw), CardError) < bound * MAX_CARD_BYTES
