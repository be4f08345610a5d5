"""The card's `content` field: whether a peer offers resources, templates or prompts besides peer cards."""

from __future__ import annotations

import base64
import json

import pytest

from federation.card import PeerCard, sign_card, verify_card
from federation.errors import CardError
from federation.identity import Identity


def _signed(identity: Identity, content: bool | None) -> PeerCard:
    return sign_card(PeerCard(id="", name="light", pubkey="", mesh="home", endpoints=["http://127.0.0.1:8801/mcp"], content=content), identity)


def test_a_card_signed_before_the_field_existed_still_verifies_and_says_nothing() -> None:
    identity = Identity.generate()
    body = _signed(identity, None).model_dump(mode="json", exclude={"signature", "content", "lend"})  # what an older peer signed (no lend offered)
    body["signature"] = base64.b64encode(identity.sign(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())).decode()
    assert verify_card(body).content is None, "an older card: followed for content as before"


def test_the_field_is_signed_and_changing_it_changes_the_digest() -> None:
    identity = Identity.generate()
    light, rich, older = (_signed(identity, content) for content in (False, True, None))
    assert len({light.digest(), rich.digest(), older.digest()}) == 3, "followers learn the peer again when it gains content"
    assert verify_card(light.model_dump_json()).content is False
    with pytest.raises(CardError, match="bad signature"):
        verify_card(light.model_dump(mode="json") | {"content": True})
