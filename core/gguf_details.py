"""What pollama reports about a GGUF file, computed from its metadata (passed in as data).

The adapter reads key/values and tensor element counts with the ``gguf`` package; this module
turns them into Ollama's ``details`` (Ollama's server/routes.go ListHandler, PsHandler,
ShowHandler) and the config blob fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FILE_TYPES", "TENSOR_TYPES", "ModelFacts", "facts", "human_number"]

# llama.cpp's llama_ftype values → the names Ollama shows as quantization_level.
FILE_TYPES: Mapping[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4",
}


# ggml tensor types → names (for /api/show verbose ``tensors``).
TENSOR_TYPES: Mapping[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
    30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}


def human_number(n: int) -> str:
    """Ollama's format.HumanNumber: 134515008 → "134.52M", 8030261248 → "8.0B"."""
    if n >= 1_000_000_000:
        v = n / 1_000_000_000
        return f"{v:.0f}B" if v == int(v) else f"{v:.1f}B"
    if n >= 1_000_000:
        v = n / 1_000_000
        return f"{v:.0f}M" if v == int(v) else f"{v:.2f}M"
    if n >= 1_000:
        return f"{n / 1_000:.0f}K"
    return str(n)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelFacts:
    architecture: str
    parameter_count: int
    file_type: str
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    head_count: int | None
    head_count_kv: int | None
    chat_template: str | None
    bos_token: str
    eos_token: str
    pooling_type: int | None = None  # set (> 0) by embedding models: they pool, not generate

    @property
    def parameter_size(self) -> str:
        return human_number(self.parameter_count)


def facts(kv: Mapping[str, Any], parameter_count: int,
          tokens: list[str] | None = None) -> ModelFacts:
    """Model facts from GGUF key/values. ``tokens`` (the vocabulary) names BOS/EOS."""
    arch = str(kv.get("general.architecture") or "")

    def arch_int(key: str) -> int | None:
        v = kv.get(f"{arch}.{key}")
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    ft = kv.get("general.file_type")
    file_type = FILE_TYPES.get(int(ft), f"unknown({ft})") if isinstance(ft, int) else ""
    head_kv = arch_int("attention.head_count_kv")
    template = kv.get("tokenizer.chat_template")

    def token(key: str) -> str:
        idx = kv.get(key)
        if tokens is not None and isinstance(idx, int) and 0 <= idx < len(tokens):
            return tokens[idx]
        return ""

    return ModelFacts(
        architecture=arch,
        parameter_count=parameter_count,
        file_type=file_type,
        context_length=arch_int("context_length"),
        embedding_length=arch_int("embedding_length"),
        block_count=arch_int("block_count"),
        head_count=arch_int("attention.head_count"),
        head_count_kv=head_kv,
        chat_template=template if isinstance(template, str) and template else None,
        pooling_type=arch_int("pooling_type"),
        bos_token=token("tokenizer.ggml.bos_token_id"),
        eos_token=token("tokenizer.ggml.eos_token_id"),
    )
