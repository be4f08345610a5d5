"""The signed chunk manifest of one GGUF file: what a puller checks every chunk against.

A holder hashes its file once (the whole file and every fixed-size chunk) and
signs the list with its peer key. A puller takes the manifest from one
holder, checks that the signature is that holder's (whose card it already
verified) and that it describes the file it asked for, then accepts a chunk
from any holder only if its sha256 is the manifest's. Chunks are asked for by
byte range, so holders that chunk differently still serve the same pull.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from federation.card import PeerCard, SharedModel
from federation.errors import PullError
from federation.identity import Identity, b64decode_exact, verify_signature
from servers.gguf_file import read_gguf_info

__all__ = ["ModelManifest", "hash_chunks", "safe_file_name", "verify_manifest"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class ModelManifest(BaseModel):
    """sha256 of the whole file and of each `chunk_bytes` chunk in order, signed by `signer`."""

    sha256: str
    size: int = Field(ge=0)
    file: str = Field(description="the file's name on the signer's disk (a pull stores it under the same name)")
    name: str
    architecture: str = ""
    quantization: str = ""
    chunk_bytes: int = Field(ge=1)
    chunks: list[str]
    signer: str = ""
    signature: str = ""

    def signed_bytes(self) -> bytes:
        body = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def signed_by(self, identity: Identity) -> ModelManifest:
        stamped = self.model_copy(update={"signer": identity.peer_id, "signature": ""})
        return stamped.model_copy(update={"signature": base64.b64encode(identity.sign(stamped.signed_bytes())).decode("ascii")})

    def span(self, index: int) -> tuple[int, int]:
        """(offset, length) of chunk `index`."""
        offset = index * self.chunk_bytes
        return offset, min(self.chunk_bytes, self.size - offset)

    def summary(self) -> SharedModel:
        return SharedModel(name=self.name, architecture=self.architecture, quantization=self.quantization, size_bytes=self.size, sha256=self.sha256)


def hash_chunks(path: Path, chunk_bytes: int, *, stop: threading.Event | None = None) -> ModelManifest:
    """Read the file once: its GGUF header, whole sha256 and chunk hashes (unsigned). Sync: run it in a thread."""
    info = read_gguf_info(path)
    whole = hashlib.sha256()
    chunks = []
    with path.open("rb") as stream:
        while block := stream.read(chunk_bytes):
            if stop is not None and stop.is_set():
                raise InterruptedError(f"stopped hashing {path}")
            whole.update(block)
            chunks.append(hashlib.sha256(block).hexdigest())
    return ModelManifest(
        sha256=whole.hexdigest(),
        size=info.size,
        file=path.name,
        name=info.name,
        architecture=info.architecture,
        quantization=info.quantization,
        chunk_bytes=chunk_bytes,
        chunks=chunks,
    )


def safe_file_name(manifest: ModelManifest) -> str:
    """The name to store a pulled file under: the signer's, reduced to harmless characters, always `.gguf`."""
    stem = _UNSAFE.sub("_", Path(manifest.file).stem).strip("._") or manifest.sha256[:16]
    return f"{stem[:100]}.gguf"


def verify_manifest(raw: bytes, *, holder: PeerCard, sha256: str) -> ModelManifest:
    """Parse a manifest `holder` served for `sha256` and check it; PullError naming the holder and the fault."""
    who = f"{holder.name} ({holder.id})"
    try:
        manifest = ModelManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise PullError(f"holder {who} sent a malformed manifest for sha256:{sha256[:16]}…: {exc.errors()[0]['msg']}") from exc
    try:
        public_key = b64decode_exact(holder.pubkey)
        signature = b64decode_exact(manifest.signature)
    except ValueError as exc:
        raise PullError(f"holder {who} sent a manifest whose signature is not canonical base64") from exc
    if manifest.signer != holder.id or not verify_signature(public_key, signature, manifest.signed_bytes()):
        raise PullError(f"holder {who} sent a manifest with a bad signature (altered in transit or forged); it is not used")
    expected_chunks = -(-manifest.size // manifest.chunk_bytes)
    if manifest.sha256 != sha256 or not _SHA256.fullmatch(manifest.sha256):
        raise PullError(f"holder {who} sent the manifest of sha256:{manifest.sha256[:16]}… when asked for sha256:{sha256[:16]}…")
    if len(manifest.chunks) != expected_chunks or not all(_SHA256.fullmatch(chunk) for chunk in manifest.chunks):
        raise PullError(f"holder {who} sent a manifest whose chunk list does not fit its size ({manifest.size} bytes in {manifest.chunk_bytes}-byte chunks)")
    return manifest
