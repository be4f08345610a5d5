"""The card's lend offer: signed like the rest, shown to people, and cards signed before it existed still verify."""

from __future__ import annotations

import base64
import json

import pytest

from federation.card import LayerShare, LendOffer, ModelSummary, PeerCard, card_markdown, sign_card, verify_card
from federation.errors import CardError
from federation.identity import Identity


def unsigned(**fields: object) -> PeerCard:
    return PeerCard(id="", name="lender", pubkey="", mesh="home", endpoints=["http://127.0.0.1:8801/mcp"], **fields)  # type: ignore[arg-type]


MODEL = ModelSummary(name="Gemma", architecture="gemma3", quantization="Q4_K_M", size_bytes=1, sha256="ab" * 32, n_ctx=512)


def test_a_card_signed_before_lending_existed_still_verifies() -> None:
    identity = Identity.generate()
    older = {"signature": True, "lend": True, "content": True, "models": {"__all__": {"split"}}}  # what an older peer signed: no `lend`, `content`, model `split`
    body = sign_card(unsigned(models=[MODEL]), identity).model_dump(mode="json", exclude=older)
    signed = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    body["signature"] = base64.b64encode(identity.sign(signed)).decode()
    assert verify_card(body).lend is None


def test_the_lend_offer_is_signed_and_shown() -> None:
    card = sign_card(unsigned(lend=LendOffer(bytes=2 * 10**9, device="cpu", host="h" * 16)), Identity.generate())
    assert verify_card(card.model_dump_json()).lend == LendOffer(bytes=2 * 10**9, device="cpu", host="h" * 16)
    assert "- lends: 2.0 GB on cpu for split models (holding the layers of host `hhhhhhhhhhhhhhhh`)" in card_markdown(card)
    forged = card.model_dump(mode="json") | {"lend": {"bytes": 64 * 10**9, "device": "cpu", "host": None}}
    with pytest.raises(CardError, match="bad signature"):
        verify_card(forged)


def test_where_a_split_model_s_layers_are_is_signed_and_shown() -> None:
    split = [LayerShare(peer="host", layers=7), LayerShare(peer="lender1", id="l" * 16, layers=12)]
    card = sign_card(unsigned(models=[MODEL.model_copy(update={"split": split})]), Identity.generate())
    assert verify_card(card.model_dump_json()).models[0].split == split
    assert "Gemma is split (layers per peer): host: 7, lender1 (`llllllll`): 12" in card_markdown(card)


def test_lending_changes_the_digest_peers_refetch_on() -> None:
    assert unsigned().digest() != unsigned(lend=LendOffer(bytes=10**9)).digest()
