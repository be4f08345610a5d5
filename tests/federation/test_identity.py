"""A peer's Ed25519 identity: kept in its state directory, its id derived from its key."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from federation.errors import ConfigError
from federation.identity import Identity, peer_id_for, verify_signature


def test_first_start_creates_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    identity = Identity.load_or_create(tmp_path)
    key_file = tmp_path / "identity.pem"
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(identity.public_key) == 32


def test_the_same_state_directory_gives_the_same_peer(tmp_path: Path) -> None:
    assert Identity.load_or_create(tmp_path).peer_id == Identity.load_or_create(tmp_path).peer_id


def test_different_state_directories_give_different_peers(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert Identity.load_or_create(tmp_path / "a").peer_id != Identity.load_or_create(tmp_path / "b").peer_id


def test_peer_id_is_short_lowercase_base32_of_the_key_hash() -> None:
    identity = Identity.generate()
    expected = base64.b32encode(hashlib.sha256(identity.public_key).digest()).decode().lower()[:16]
    assert identity.peer_id == peer_id_for(identity.public_key) == expected


def test_signatures_verify_only_for_the_signed_message_and_key() -> None:
    identity, other = Identity.generate(), Identity.generate()
    signature = identity.sign(b"hello")
    assert verify_signature(identity.public_key, signature, b"hello")
    assert not verify_signature(identity.public_key, signature, b"hellO")
    assert not verify_signature(other.public_key, signature, b"hello")
    assert not verify_signature(b"short", signature, b"hello")


def test_unreadable_key_file_says_to_move_it_away(tmp_path: Path) -> None:
    (tmp_path / "identity.pem").write_text("garbage")
    with pytest.raises(ConfigError, match=r"is not a readable private key .*move it away"):
        Identity.load_or_create(tmp_path)


def test_key_of_another_kind_says_to_move_it_away(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "identity.pem").write_bytes(pem)
    with pytest.raises(ConfigError, match="non-Ed25519 key; move it away"):
        Identity.load_or_create(tmp_path)
