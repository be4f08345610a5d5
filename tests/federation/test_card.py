"""Peer cards: signed by the peer's key, and any change to any field is caught."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from federation.card import _NESTED, Load, ModelSummary, PeerCard, ToolSummary, card_markdown, sign_card, verify_card
from federation.errors import CardError
from federation.identity import Identity
from tests.support.cards import future_card, resign


@pytest.fixture(scope="module")
def identity() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="module")
def card(identity: Identity) -> PeerCard:
    unsigned = PeerCard(
        id="",
        name="alice",
        pubkey="",
        mesh="home",
        software="mcp-federation/0.1.0",
        endpoints=["http://127.0.0.1:8801/mcp"],
        models=[ModelSummary(name="Gemma 3 270m", architecture="gemma3", quantization="Q4_K_M", size_bytes=253113024, sha256="ab" * 32, n_ctx=4096)],
        tools=[ToolSummary(name="generate", description="Continue a prompt."), ToolSummary(name="model_info")],
        load=Load(in_flight=1, queued=2),
    )
    return sign_card(unsigned, identity)


def test_signed_card_verifies_from_json_bytes_dict_and_object(card: PeerCard, identity: Identity) -> None:
    raw = card.model_dump_json()
    for form in (raw, raw.encode(), json.loads(raw), card):
        assert verify_card(form, expected_id=identity.peer_id, mesh="home") == card


def test_a_second_spelling_of_the_same_signature_is_refused(card: PeerCard) -> None:
    """Base64 ignores the unused low bits of the last character: the same signature bytes, spelled otherwise, must not pass."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = card.signature.rstrip("=")[-1]
    respelled = card.signature.rstrip("=")[:-1] + alphabet[alphabet.index(last) ^ 1] + "=" * card.signature.count("=")
    assert base64.b64decode(respelled) == base64.b64decode(card.signature)
    with pytest.raises(CardError, match="not canonical base64"):
        verify_card(card.model_copy(update={"signature": respelled}))


def test_signing_stamps_the_identity_id_and_key(card: PeerCard, identity: Identity) -> None:
    assert card.id == identity.peer_id
    assert base64.b64decode(card.pubkey) == identity.public_key
    assert card.issued_at > 0


def one_byte_changes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, changed leaf) for every leaf of a card's JSON: one character or digit altered."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from one_byte_changes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from one_byte_changes(item, (*path, index))
    elif isinstance(value, bool):
        yield path, not value
    elif isinstance(value, str) and value:
        yield path, value[:-1] + chr(ord(value[-1]) ^ 1)
    elif isinstance(value, (int, float)):
        text = repr(value)
        yield path, type(value)(text[:-1] + chr(ord(text[-1]) ^ 1))


def with_leaf(data: Any, path: tuple[Any, ...], leaf: Any) -> Any:
    copy = json.loads(json.dumps(data))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = leaf
    return copy


def test_every_one_byte_change_to_any_field_fails(card: PeerCard) -> None:
    data = json.loads(card.model_dump_json())
    changes = list(one_byte_changes(data))
    assert {path[0] for path, _ in changes} >= {"id", "name", "pubkey", "mesh", "endpoints", "models", "tools", "load", "issued_at", "signature"}
    for path, leaf in changes:
        with pytest.raises(CardError):
            verify_card(with_leaf(data, path, leaf))


SIGNED_BEFORE = (
    # Signed by the version before this rule was written (null added-later fields left out of the signed bytes by name).
    '{"id":"sn4ibhuwf5hs235j","name":"alice","pubkey":"UW38CjquamRt0oZycZXeHnoQdiYvx5bqFpnDSaYiiV4=","mesh":"home","protocol":"1",'
    '"software":"mcp-federation/0.1.0","endpoints":["http://127.0.0.1:8801/mcp"],"models":[{"name":"Gemma 3 270m","architecture":"gemma3",'
    '"quantization":"Q4_K_M","size_bytes":253113024,"sha256":"abababababababababababababababababababababababababababababababab","n_ctx":4096,'
    '"n_gpu_layers":0,"split":null}],"tools":[{"name":"generate","description":"Continue a prompt."}],"load":{"in_flight":1,"queued":2},'
    '"shares":[],"lend":null,"content":null,"issued_at":1796039961.28,'
    '"signature":"MjMZ4diYFlRCBHS9rIKpURDMtQ+3hpzZtneE/AnrAJYSaVrJSc51Gd+5PDgAAgftD4toOhF03HvNmVfYW8gCDw=="}',
    '{"id":"sn4ibhuwf5hs235j","name":"alice","pubkey":"UW38CjquamRt0oZycZXeHnoQdiYvx5bqFpnDSaYiiV4=","mesh":"home","protocol":"1",'
    '"software":"mcp-federation/0.1.0","endpoints":["http://127.0.0.1:8801/mcp"],"models":[{"name":"Gemma 3 270m","architecture":"gemma3",'
    '"quantization":"Q4_K_M","size_bytes":253113024,"sha256":"abababababababababababababababababababababababababababababababab","n_ctx":4096,'
    '"n_gpu_layers":0,"split":[{"peer":"alice","id":null,"layers":10},{"peer":"bob","id":"bbbbbbbbbbbbbbbb","layers":8}]}],'
    '"tools":[{"name":"generate","description":"Continue a prompt."}],"load":{"in_flight":1,"queued":2},'
    '"shares":[{"name":"tiny","architecture":"","quantization":"","size_bytes":10,'
    '"sha256":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"}],"lend":{"bytes":1000000000,"device":"cpu","host":null},'
    '"content":false,"issued_at":1796039961.28,'
    '"signature":"w/NNT3A1WfMFpFiZHvo4vjCw0rriqhYj358VvuUlLxp+2AADRQfiqEVat9HUHw8CXDz4q+GBW3oHfllJF0Q9Aw=="}',
)


@pytest.mark.parametrize("raw", SIGNED_BEFORE, ids=["added-fields-unset", "added-fields-set"])
def test_cards_signed_before_the_canonical_rule_still_verify_and_sign_the_same(raw: str) -> None:
    card = verify_card(raw, mesh="home")
    assert card.signed_bytes() == PeerCard.model_validate_json(raw).signed_bytes()
    assert verify_card(card) == card
    unset_left_out = json.loads(raw)
    for key in [key for key, value in unset_left_out.items() if value is None and key in ("lend", "content")]:
        del unset_left_out[key]  # as a peer from before these fields sends its card
    for model in unset_left_out["models"]:
        if model["split"] is None:
            del model["split"]
    assert verify_card(unset_left_out) == card


def _model_types(annotation: Any) -> set[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    return {found for arg in getattr(annotation, "__args__", ()) for found in _model_types(arg)}


def test_every_field_holding_a_model_is_followed_by_the_canonical_rule() -> None:
    """A nested model left out of the map would have its added-later fields signed while null: old cards would fail."""
    seen, todo = set(), [PeerCard]
    while todo:
        model = todo.pop()
        seen.add(model)
        for name, field in model.model_fields.items():
            for inner in _model_types(field.annotation):
                assert _NESTED.get(model, {}).get(name) is inner, f"{model.__name__}.{name} holds {inner.__name__}: add it to card._NESTED"
                todo += [inner] if inner not in seen else []
    assert seen >= set(_NESTED)


def test_a_card_from_a_newer_version_with_fields_unknown_here_verifies(card: PeerCard, identity: Identity) -> None:
    newer = future_card(card, identity)
    for form in (newer, json.dumps(newer), json.dumps(newer).encode()):
        parsed = verify_card(form, expected_id=identity.peer_id, mesh="home")
        assert parsed.model_dump(exclude={"signature"}) == card.model_dump(exclude={"signature"}), "the fields unknown here are not parsed"


def test_any_change_to_a_newer_versions_card_fails_unknown_fields_included(card: PeerCard, identity: Identity) -> None:
    newer = future_card(card, identity)
    changes = list(one_byte_changes(newer))
    assert {path for path, _ in changes} >= {("future_field", "x"), ("models", 0, "future_nested")}
    for path, leaf in changes:
        with pytest.raises(CardError):
            verify_card(with_leaf(newer, path, leaf))
    for dropped in ("future_field", "software", "tools"):  # fields with a default here: the card still parses
        with pytest.raises(CardError, match="bad signature"):
            verify_card({key: value for key, value in newer.items() if key != dropped})


def test_an_unknown_field_added_to_a_card_fails_unless_null(card: PeerCard) -> None:
    data = json.loads(card.model_dump_json())
    with pytest.raises(CardError, match="bad signature"):
        verify_card(data | {"unknown": 0})
    with pytest.raises(CardError, match="bad signature"):
        verify_card(with_leaf(data, ("load", "unknown"), "x"))
    assert verify_card(data | {"unknown": None}) == card, "a newer version's field left out while unset: not signed"


def test_unknown_values_are_signed_as_they_are_nulls_inside_them_included(card: PeerCard, identity: Identity) -> None:
    with_extra = resign(json.loads(card.model_dump_json()) | {"extra": [1, None]}, identity)
    assert verify_card(with_extra) == card.model_copy(update={"signature": with_extra["signature"]})
    with pytest.raises(CardError, match="bad signature"):
        verify_card(with_extra | {"extra": [1]})


def test_id_that_is_not_the_hash_of_the_key_fails(card: PeerCard, identity: Identity) -> None:
    other = Identity.generate()
    claims_other_id = card.model_copy(update={"id": other.peer_id, "signature": ""})
    signature = base64.b64encode(identity.sign(claims_other_id.signed_bytes())).decode()  # a genuine signature, a made-up id
    with pytest.raises(CardError, match=f"claims id '{other.peer_id}' but its key hashes to '{identity.peer_id}'"):
        verify_card(claims_other_id.model_copy(update={"signature": signature}))


def test_card_signed_by_another_key_fails(card: PeerCard) -> None:
    forger = Identity.generate()
    forged = card.model_copy(update={"signature": base64.b64encode(forger.sign(card.signed_bytes())).decode()})
    with pytest.raises(CardError, match="bad signature"):
        verify_card(forged)


def test_card_for_someone_else_fails_when_a_peer_is_expected(card: PeerCard) -> None:
    with pytest.raises(CardError, match="expected peer 'someoneelse00000'"):
        verify_card(card, expected_id="someoneelse00000")


def test_card_from_another_mesh_fails(card: PeerCard) -> None:
    with pytest.raises(CardError, match="belongs to mesh 'home', not 'work'"):
        verify_card(card, mesh="work")


@pytest.mark.parametrize("raw", ["not json", '{"id": "x"}', "[]"], ids=["not-json", "missing-fields", "not-an-object"])
def test_malformed_card_fails_with_a_card_error(raw: str) -> None:
    with pytest.raises(CardError, match="malformed peer card"):
        verify_card(raw)


def test_key_that_is_not_base64_fails(card: PeerCard) -> None:
    with pytest.raises(CardError, match="not canonical base64"):
        verify_card(card.model_copy(update={"pubkey": "not base64!"}))


def test_digest_follows_what_is_offered_not_the_load(card: PeerCard) -> None:
    busier = card.model_copy(update={"load": Load(in_flight=5, queued=9)})
    more_tools = card.model_copy(update={"tools": [*card.tools, ToolSummary(name="embed")]})
    assert busier.digest() == card.digest()
    assert more_tools.digest() != card.digest()


def test_markdown_names_the_peer_its_models_and_tools(card: PeerCard) -> None:
    text = card_markdown(card)
    assert text.startswith(f"# alice (`{card.id}`)")
    assert "- load: 1 in flight, 2 queued" in text
    assert "| Gemma 3 270m | Q4_K_M | 253 MB | 4096 | 0 | `abababababababab…` |" in text
    assert "- `generate`: Continue a prompt." in text
    assert "- `model_info`: " in text


def test_markdown_shows_when_the_card_was_signed_as_a_date(card: PeerCard) -> None:
    text = card_markdown(card.model_copy(update={"issued_at": 1_767_225_600.0}))
    assert text.rstrip().endswith(f"Signed by `{card.pubkey}` on 2026-01-01 00:00:00 UTC.")
