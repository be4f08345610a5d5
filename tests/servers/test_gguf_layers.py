"""Layer sizes read from a GGUF header: what the split planner weighs."""

from __future__ import annotations

from servers.embedded_models import model_path
from servers.gguf_file import read_gguf_info
from tests.support.models import BASE_MODEL


def test_each_block_of_the_embedded_model_has_its_size() -> None:
    info = read_gguf_info(model_path(BASE_MODEL))
    layers = info.layer_bytes()
    assert len(layers) == info.metadata["gemma3.block_count"]
    assert all(size > 0 for size in layers)
    assert sum(layers) < info.data_bytes < info.size  # the embeddings are no block
