"""The peer card: who a peer is and what it offers, signed by its key.

A card is served at `GET /peer` (JSON) and `GET /peer.md` (Markdown for
people). Discovery and relays pass cards around; whoever receives one checks
it with `verify_card` before trusting anything in it. The signature covers the
canonical JSON of every field but `signature` itself, so a one-byte change
anywhere fails; it is checked over the JSON as received, so a card from a newer
version, with fields this one does not know, verifies too (docs/discovery.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime, tzinfo
from typing import Any

from pydantic import BaseModel, Field

from federation.const import PROTOCOL_VERSION
from federation.errors import CardError
from federation.identity import Identity, b64decode_exact, peer_id_for, verify_signature

__all__ = ["LayerShare", "LendOffer", "Load", "ModelSummary", "PeerCard", "SharedModel", "ToolSummary", "card_markdown", "sign_card", "verify_card"]


class LayerShare(BaseModel):
    """Where some of a split model's layers are (`serve --split`): on the host itself (`id` None) or on a lender."""

    peer: str
    id: str | None = None
    layers: int


class ModelSummary(BaseModel):
    name: str
    architecture: str
    quantization: str
    size_bytes: int
    sha256: str
    n_ctx: int
    n_gpu_layers: int = 0
    split: list[LayerShare] | None = Field(default=None, description="a split model's layers: the host's, then each lender's")


class SharedModel(BaseModel):
    """A GGUF file the peer hands out in chunks to mesh members (`mcpfed pull`, federation.pull)."""

    name: str
    architecture: str = ""
    quantization: str = ""
    size_bytes: int
    sha256: str


class ToolSummary(BaseModel):
    name: str
    description: str = ""


class Load(BaseModel):
    in_flight: int = 0
    queued: int = 0


class LendOffer(BaseModel):
    """Compute this peer lends to the mesh (`serve --lend`, federation.pooled): a host splits a model over it."""

    bytes: int = Field(ge=0, description="memory lent to one host's layers")
    device: str = Field(default="cpu", description="where the lent layers run: 'cpu' or the GPU's name")
    host: str | None = Field(default=None, description="the peer whose layers it holds now (one host at a time); None when free")


class PeerCard(BaseModel):
    id: str
    name: str
    pubkey: str = Field(description="base64 of the raw Ed25519 public key")
    mesh: str | None = None
    protocol: str = PROTOCOL_VERSION
    software: str = ""
    endpoints: list[str] = Field(default_factory=list, description="URLs of the peer's MCP endpoint")
    models: list[ModelSummary] = Field(default_factory=list)
    tools: list[ToolSummary] = Field(default_factory=list)
    load: Load = Field(default_factory=Load)
    shares: list[SharedModel] = Field(default_factory=list, description="models members may pull from this peer")
    lend: LendOffer | None = Field(default=None, description="compute it lends for split models (`serve --lend`)")
    content: bool | None = Field(
        default=None,
        description="whether it offers resources, templates or prompts besides peer cards (its own or passed on): "
        "a peer that offers none is not followed for them; None (cards from before this field): followed",
    )
    issued_at: float = 0.0
    signature: str = ""

    def signed_bytes(self) -> bytes:
        """Canonical JSON of every field except the signature."""
        return _signed_bytes(self.model_dump(mode="json"))

    def digest(self) -> str:
        """Short hash of what the peer offers (not its load): changes when models, tools or whether it offers content change."""
        body = self.model_dump(mode="json", include={"id", "name", "mesh", "endpoints", "models", "tools", "protocol", "shares", "lend", "content"})
        if body["content"] is None:  # a card from before the field keeps the digest it had
            del body["content"]
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(raw).hexdigest()[:12]


_ADDED_OPTIONAL: dict[type[BaseModel], frozenset[str]] = {PeerCard: frozenset({"lend", "content"}), ModelSummary: frozenset({"split"})}
"""Fields added after the first cards: left out of the signed bytes while unset, so cards signed before them still verify.
A field this version does not know is left out while null by the same rule: a newer version added it, unset."""

_NESTED: dict[type[BaseModel], dict[str, type[BaseModel]]] = {
    PeerCard: {"models": ModelSummary, "tools": ToolSummary, "load": Load, "shares": SharedModel, "lend": LendOffer},
    ModelSummary: {"split": LayerShare},
}
"""The fields holding a model (or a list of them) that `_canonical` follows, so the rule above applies inside them too."""


def _canonical(body: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """`body` (the JSON of a `model`) as signed: added-later or unknown fields left out while null, all else kept as is.

    Works on the JSON received, not on what this version parsed from it, so
    the fields a newer version signed stay in: its cards verify here, and
    nobody can add, drop or change a signed value unnoticed.
    """
    added, nested = _ADDED_OPTIONAL.get(model, frozenset()), _NESTED.get(model, {})
    kept: dict[str, Any] = {}
    for key, value in body.items():
        if value is None and (key in added or key not in model.model_fields):
            continue
        inner = nested.get(key)
        if inner is not None and isinstance(value, list):
            value = [_canonical(item, inner) if isinstance(item, dict) else item for item in value]
        elif inner is not None and isinstance(value, dict):
            value = _canonical(value, inner)
        kept[key] = value
    return kept


def _signed_bytes(card: dict[str, Any]) -> bytes:
    """What the signature covers: the canonical JSON of every field but the signature, in a card's JSON."""
    body = _canonical({key: value for key, value in card.items() if key != "signature"}, PeerCard)
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign_card(card: PeerCard, identity: Identity) -> PeerCard:
    """Return `card` stamped with the identity's id, key, time and signature."""
    stamped = card.model_copy(
        update={
            "id": identity.peer_id,
            "pubkey": base64.b64encode(identity.public_key).decode("ascii"),
            "issued_at": round(time.time(), 3),
            "signature": "",
        }
    )
    signature = identity.sign(stamped.signed_bytes())
    return stamped.model_copy(update={"signature": base64.b64encode(signature).decode("ascii")})


def verify_card(card: PeerCard | dict[str, Any] | bytes | str, *, expected_id: str | None = None, mesh: str | None = None) -> PeerCard:
    """Parse and check a card; raise `CardError` saying exactly what is wrong.

    The signature is checked over the JSON received (a `PeerCard` is taken as
    its JSON), so fields a newer version added are signed and verified too,
    though this version does not parse them.
    """
    try:
        if isinstance(card, PeerCard):
            body = card.model_dump(mode="json")
        else:
            body = json.loads(card) if isinstance(card, (bytes, str)) else card
        if not isinstance(body, dict):
            raise ValueError(f"expected a JSON object, got {type(body).__name__}")
        signed = _signed_bytes(body)  # first: its working copy is gone before the parsed card takes memory
        parsed = PeerCard.model_validate(body)
    except (ValueError, TypeError, RecursionError) as exc:  # not JSON, not a card, or nested past what JSON parsing allows
        raise CardError(f"malformed peer card: {exc}") from exc
    try:
        public_key = b64decode_exact(parsed.pubkey)
        signature = b64decode_exact(parsed.signature)
    except ValueError as exc:
        raise CardError(f"peer card {parsed.id!r} has a key or signature that is not canonical base64") from exc
    if peer_id_for(public_key) != parsed.id:
        raise CardError(f"peer card claims id {parsed.id!r} but its key hashes to {peer_id_for(public_key)!r}")
    if expected_id is not None and parsed.id != expected_id:
        raise CardError(f"expected peer {expected_id!r} but the card is for {parsed.id!r}")
    if not verify_signature(public_key, signature, signed):
        raise CardError(f"peer card {parsed.id!r} has a bad signature (altered in transit or forged)")
    if mesh is not None and parsed.mesh != mesh:
        raise CardError(f"peer {parsed.id!r} belongs to mesh {parsed.mesh!r}, not {mesh!r}")
    return parsed


def card_markdown(card: PeerCard, *, tz: tzinfo | None = UTC) -> str:
    """A human description of the peer, for `GET /peer.md` and people reading it.

    The signing time is shown in `tz` (None: this machine's local time), not as epoch seconds.
    """
    lines = [
        f"# {card.name} (`{card.id}`)",
        "",
        f"- mesh: {card.mesh or '(none)'}",
        f"- protocol: {card.protocol}; software: {card.software}",
        f"- load: {card.load.in_flight} in flight, {card.load.queued} queued",
        *(f"- endpoint: <{url}>" for url in card.endpoints),
        *([_lend_line(card.lend)] if card.lend else []),
        "",
        "## Models",
        "",
    ]
    if card.models:
        lines += ["| name | quantization | size | context | GPU layers | sha256 |", "|---|---|---|---|---|---|"]
        lines += [
            f"| {m.name} | {m.quantization} | {m.size_bytes / 1e6:.0f} MB | {m.n_ctx} | {m.n_gpu_layers} | `{m.sha256[:16]}…` |"
            for m in card.models
        ]
        lines += [_split_line(m.name, m.split) for m in card.models if m.split]
    else:
        lines.append("(no model)")
    lines += ["", "## Tools", ""]
    lines += [f"- `{t.name}`: {t.description.splitlines()[0] if t.description else ''}" for t in card.tools] or ["(none)"]
    signed = datetime.fromtimestamp(card.issued_at, UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")
    lines += ["", f"Signed by `{card.pubkey}` on {signed}.", ""]
    return "\n".join(lines)


def _lend_line(offer: LendOffer) -> str:
    holder = f"holding the layers of host `{offer.host}`" if offer.host else "free"
    return f"- lends: {offer.bytes / 1e9:.1f} GB on {offer.device} for split models ({holder})"


def _split_line(model: str, split: list[LayerShare]) -> str:
    where = ", ".join(f"{share.peer}{f' (`{share.id[:8]}`)' if share.id else ''}: {share.layers}" for share in split)
    return f"\n{model} is split (layers per peer): {where}"
