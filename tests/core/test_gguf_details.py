"""core/gguf_details.py: Ollama's human parameter counts and the facts read from GGUF keys."""

from __future__ import annotations

from pollama.core import gguf_details


def test_human_number_and_facts() -> None:
    assert gguf_details.human_number(134_515_008) == "134.52M"
    assert gguf_details.human_number(8_030_261_248) == "8.0B"
    assert gguf_details.human_number(7_000_000_000) == "7B"
    assert gguf_details.human_number(1500) == "2K"
    f = gguf_details.facts({"general.architecture": "llama", "general.file_type": 3,
                            "llama.context_length": 8192, "llama.embedding_length": 576,
                            "tokenizer.ggml.eos_token_id": 1}, 134_515_008, ["<s>", "</s>"])
    assert (f.file_type, f.context_length, f.parameter_size, f.eos_token) == (
        "Q4_1", 8192, "134.52M", "</s>")
