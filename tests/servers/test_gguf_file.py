"""Reading a GGUF header: what the embedded model says about itself, and every way a file can be unusable."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from servers.embedded_models import model_path as embedded_model_path
from servers.gguf_file import GGUFError, read_gguf_info, sha256_of
from tests.support.models import BASE_MODEL, copy_head


@pytest.fixture(scope="module")
def model_path() -> Path:
    return embedded_model_path(BASE_MODEL)


def test_embedded_model_header_names_its_architecture_quantization_and_context(model_path: Path) -> None:
    info = read_gguf_info(model_path)
    assert info.architecture == "gemma3"
    assert info.quantization == "Q4_K_M"
    assert info.context_length == 32768
    assert info.size == model_path.stat().st_size
    assert info.tensor_count > 0
    assert info.version in (2, 3)
    assert info.chat_template is None  # the base model ships none: chat formats Gemma turns itself
    assert "270m" in info.name.lower()


def test_missing_file_says_it_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match=r"does not exist.*--model"):
        read_gguf_info(tmp_path / "absent.gguf")


def test_directory_says_pass_a_file_inside_it(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match="is a directory"):
        read_gguf_info(tmp_path)


def test_file_that_is_not_gguf_is_refused_by_its_magic(tmp_path: Path) -> None:
    bogus = tmp_path / "weights.gguf"
    bogus.write_text("<html>404 not found</html>")
    with pytest.raises(GGUFError, match="not a GGUF model"):
        read_gguf_info(bogus)


def test_empty_file_is_not_gguf(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gguf"
    empty.touch()
    with pytest.raises(GGUFError, match="not a GGUF model"):
        read_gguf_info(empty)


@pytest.mark.parametrize("size", [6, 64, 4096], ids=["inside-version", "inside-metadata", "inside-tokenizer"])
def test_file_cut_inside_its_header_is_called_truncated(model_path: Path, tmp_path: Path, size: int) -> None:
    with pytest.raises(GGUFError, match="truncated"):
        read_gguf_info(copy_head(model_path, tmp_path / "cut.gguf", size))


def test_file_cut_inside_its_tensor_data_is_called_truncated(model_path: Path, tmp_path: Path) -> None:
    cut = copy_head(model_path, tmp_path / "cut.gguf", model_path.stat().st_size // 2)
    with pytest.raises(GGUFError, match=r"truncated: its tensors need more than \d+ bytes but the file has"):
        read_gguf_info(cut)


def test_unsupported_gguf_version_is_named(model_path: Path, tmp_path: Path) -> None:
    header = copy_head(model_path, tmp_path / "v9.gguf", 4096).read_bytes()
    (tmp_path / "v9.gguf").write_bytes(header[:4] + struct.pack("<I", 9) + header[8:])
    with pytest.raises(GGUFError, match="version 9"):
        read_gguf_info(tmp_path / "v9.gguf")


def test_sha256_of_matches_hashlib_across_chunk_boundaries(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_of(path, chunk_size=1000) == hashlib.sha256(data).hexdigest()
