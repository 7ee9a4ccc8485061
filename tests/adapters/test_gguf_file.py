"""On the real SmolLM2 file, our header reader agrees with the reference gguf package."""

from __future__ import annotations

import pytest

from pollama.adapters import gguf_file


def test_real_model_matches_gguf_package(smollm2_gguf: str) -> None:
    gguf_pkg = pytest.importorskip("gguf")
    facts, n_vocab = gguf_file.read_facts_and_vocab(smollm2_gguf)
    reader = gguf_pkg.GGUFReader(smollm2_gguf, "r")
    assert facts.parameter_count == sum(int(t.n_elements) for t in reader.tensors)
    assert facts.architecture == "llama" and facts.block_count == 30
    assert (facts.head_count, facts.head_count_kv, facts.embedding_length) == (9, 3, 576)
    assert facts.context_length == 8192 and facts.file_type == "Q4_1"
    assert facts.parameter_size == "134.52M"
    assert n_vocab == 49152
    assert facts.chat_template == reader.fields["tokenizer.chat_template"].contents()
    assert (facts.bos_token, facts.eos_token) == ("<|im_start|>", "<|im_end|>")
