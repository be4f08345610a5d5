"""A peer's Ed25519 identity: the key that signs its card and receipts.

The peer id is derived from the public key (short base32 of its sha256), so
anyone holding a card can check that the id was not made up: `id ==
peer_id_for(pubkey)` and the signature verifies.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from federation.errors import ConfigError

__all__ = ["Identity", "b64decode_exact", "peer_id_for", "verify_signature"]

_KEY_FILE = "identity.pem"
_ID_LENGTH = 16  # 80 bits of base32: collision-free for any mesh a person runs


def peer_id_for(public_key: bytes) -> str:
    """The peer id for a raw 32-byte Ed25519 public key."""
    digest = hashlib.sha256(public_key).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:_ID_LENGTH]


def b64decode_exact(text: str) -> bytes:
    """Standard base64 in its one canonical spelling, else ValueError.

    Plain decoding ignores the unused low bits of the last character, so one
    key or signature has several spellings: a card or receipt could change
    without its signature failing, and a copy would not look like one.
    """
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return raw


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True if `signature` is `public_key`'s signature of `message`."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class Identity:
    """A private key and the id derived from it (both computed once: ids are read on every call)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self.private_key = private_key
        self.public_key: bytes = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.peer_id: str = peer_id_for(self.public_key)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, directory: Path) -> Identity:
        """Load the key from `directory`, creating it (mode 0600) on first use."""
        path = directory / _KEY_FILE
        if path.exists():
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except ValueError as exc:
                raise ConfigError(f"{path} is not a readable private key ({exc}); move it away to make a new identity.") from exc
            if not isinstance(key, Ed25519PrivateKey):
                raise ConfigError(f"{path} holds a non-Ed25519 key; move it away to make a new identity.")
            return cls(key)
        identity = cls.generate()
        pem = identity.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.touch(mode=0o600)
        path.write_bytes(pem)
        return identity

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)
