"""Read what a GGUF file says about itself without loading it.

Why not the `gguf` package: its reader parses every tokenizer array into numpy
(15 s for the 270M Gemma file on 2 cores). Listing models and refusing a bad
file before llama.cpp gets it must be instant, so this reads the header, keeps
scalar metadata, skips arrays, and checks that every tensor starts inside the
file (a truncated download is caught here, with a message, rather than by a
llama.cpp abort).
"""

from __future__ import annotations

import hashlib
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["GGUFError", "GGUFInfo", "read_gguf_info", "sha256_of"]

_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32

# GGUF metadata value types -> struct format (scalars only; 8 = string, 9 = array).
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9

# llama.cpp's `general.file_type` (enum llama_ftype) -> the name people use.
_FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
}


class GGUFError(ValueError):
    """The file is not a usable GGUF model; the message says why and what to do."""


@dataclass(frozen=True)
class GGUFInfo:
    """What the header of a GGUF file declares."""

    path: Path
    size: int
    version: int
    tensor_count: int
    metadata: dict[str, Any] = field(repr=False)
    tensors: tuple[tuple[str, int], ...] = field(default=(), repr=False)
    """(name, offset in the data section) of each tensor, in header order."""
    data_bytes: int = 0
    """Length of the data section (the tensors, with their alignment padding)."""
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    """Each tensor's dimensions, innermost first (ggml's order: `token_embd.weight` is (n_embd, n_vocab))."""

    def tensor_bytes(self) -> dict[str, int]:
        """Bytes of each tensor: the gap to the next tensor's offset (padding included), so no type table is needed."""
        ordered = sorted(self.tensors, key=lambda tensor: tensor[1])
        ends = [offset for _, offset in ordered[1:]] + [self.data_bytes]
        return {name: end - offset for (name, offset), end in zip(ordered, ends, strict=True)}

    def layer_bytes(self) -> list[int]:
        """Bytes of each repeating block (`blk.N.*`), in block order: what placing a layer elsewhere moves."""
        blocks: dict[int, int] = {}
        for name, size in self.tensor_bytes().items():
            if name.startswith("blk.") and (index := name.split(".")[1]).isdigit():
                blocks[int(index)] = blocks.get(int(index), 0) + size
        return [blocks[index] for index in sorted(blocks)]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name") or self.path.stem)

    @property
    def quantization(self) -> str:
        file_type = self.metadata.get("general.file_type")
        if file_type is None:
            return "unknown"
        return _FILE_TYPES.get(int(file_type), f"type {file_type}")

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if value is not None else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return str(value) if value else None


class _Reader:
    def __init__(self, stream: BinaryIO, path: Path) -> None:
        self._stream = stream
        self._path = path

    def take(self, n: int) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            raise GGUFError(f"{self._path}: the file ends inside its header; it is truncated. Download it again.")
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        length = self.scalar("<Q")
        if length > 1 << 24:
            raise GGUFError(f"{self._path}: a header string claims {length} bytes; the file is corrupt.")
        return self.take(length).decode("utf-8", errors="replace")

    def value(self, value_type: int) -> Any:
        if value_type in _SCALAR_FORMATS:
            return self.scalar(_SCALAR_FORMATS[value_type])
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            self.skip_array()
            return None
        raise GGUFError(f"{self._path}: unknown metadata type {value_type}; the file is corrupt or from a newer GGUF.")

    def skip_array(self) -> None:
        item_type = self.scalar("<I")
        count = self.scalar("<Q")
        if item_type in _SCALAR_FORMATS:
            self._stream.seek(count * struct.calcsize(_SCALAR_FORMATS[item_type]), 1)
        elif item_type == _STRING:
            for _ in range(count):
                self._stream.seek(self.scalar("<Q"), 1)
        else:
            for _ in range(count):
                self.value(item_type)


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """Read a GGUF header, or raise `GGUFError` saying what is wrong with the file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise GGUFError(f"model file {path} does not exist. Pass --model PATH to a .gguf file, or --model default.")
    if path.is_dir():
        raise GGUFError(f"{path} is a directory. Pass --model the path of a .gguf file inside it.")
    size = path.stat().st_size
    with path.open("rb") as stream:
        reader = _Reader(stream, path)
        if stream.read(4) != _MAGIC:
            raise GGUFError(f"{path} is not a GGUF model (its first bytes are not 'GGUF'). Convert it with llama.cpp's convert_hf_to_gguf.py or pick a .gguf file.")
        version = reader.scalar("<I")
        if version not in (2, 3):
            raise GGUFError(f"{path} is GGUF version {version}; only versions 2 and 3 are supported.")
        tensor_count = reader.scalar("<Q")
        kv_count = reader.scalar("<Q")
        metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = reader.string()
            value = reader.value(reader.scalar("<I"))
            if value is not None:
                metadata[key] = value
        tensors, shapes = [], {}
        for _ in range(tensor_count):
            tensor_name = reader.string()
            n_dims = reader.scalar("<I")
            shapes[tensor_name] = struct.unpack(f"<{n_dims}Q", reader.take(8 * n_dims))
            reader.take(4)  # the tensor's type
            tensors.append((tensor_name, reader.scalar("<Q")))
        last_offset = max((offset for _, offset in tensors), default=0)
        alignment = int(metadata.get("general.alignment", _DEFAULT_ALIGNMENT))
        data_start = -(-stream.tell() // alignment) * alignment
    if tensor_count and data_start + last_offset >= size:
        raise GGUFError(f"{path} is truncated: its tensors need more than {data_start + last_offset} bytes but the file has {size}. Download it again.")
    return GGUFInfo(
        path=path, size=size, version=version, tensor_count=tensor_count, metadata=metadata, tensors=tuple(tensors), data_bytes=size - data_start, shapes=shapes
    )


def sha256_of(path: str | Path, chunk_size: int = 1 << 20, *, stop: threading.Event | None = None) -> str:
    """Hex sha256 of a file, read in chunks (model files are hundreds of MB).

    `stop`, once set, ends the reading at the next chunk with `InterruptedError`:
    a peer that stops must not wait for gigabytes to be hashed.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(chunk_size):
            if stop is not None and stop.is_set():
                raise InterruptedError(f"stopped hashing {path}")
            digest.update(chunk)
    return digest.hexdigest()
