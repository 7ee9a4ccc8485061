"""A tiny but valid llama-architecture GGUF with random weights, for tests that need a model
llama.cpp can load, quantize and run in milliseconds.

The vocabulary is a llama SentencePiece one: ``<unk> <s> </s>``, the 256 byte-fallback tokens
(llama.cpp looks up ``<0x0A>`` for the newline at load time, so they are required), then a few
word pieces. Weights are seeded, so the same arguments always produce the same bytes (and the
same sha256): tests can cache the file and the store deduplicates it.

The default shape keeps every matrix row a multiple of 256, so the K-quants (Q4_K_M, Q4_K_S)
really apply rather than falling back to Q5_0/Q8_0 as llama.cpp does for narrower rows.

    python -m tests.tinygguf out.gguf [f16|f32]
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

# llama_ftype values for general.file_type.
FTYPE_F32 = 0
FTYPE_F16 = 1

_PIECES = ("▁", "▁the", "▁a", "▁is", "▁of", "▁and", "▁to",
           "▁sky", "▁blue", "▁why", "▁hello", "▁world",
           "e", "t", "a", "o", "i", "n", "s", "h", "r", "l", "d", ".", ",", "?", "!")


@dataclass(frozen=True, slots=True, kw_only=True)
class TinyShape:
    n_embd: int = 256
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 512
    n_layer: int = 2
    n_ctx: int = 128


def vocab() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types (gguf.TokenType values) of the SPM vocabulary."""
    import gguf

    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    tokens += list(_PIECES)
    types += [gguf.TokenType.NORMAL] * len(_PIECES)
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(_PIECES))]
    return tokens, scores, [int(t) for t in types]


def write(path: str, *, ftype: int = FTYPE_F16, shape: TinyShape = TinyShape(),
          seed: int = 0, name: str = "tiny-llama") -> str:
    """Write the model to ``path`` (atomically) and return ``path``."""
    import gguf

    if ftype not in (FTYPE_F16, FTYPE_F32):
        raise ValueError("ftype must be FTYPE_F16 or FTYPE_F32")
    s = shape
    head_dim = s.n_embd // s.n_head
    tokens, scores, types = vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)
    matrix_dtype = np.float16 if ftype == FTYPE_F16 else np.float32

    def matrix(rows: int, cols: int) -> np.ndarray:
        # numpy (rows, cols) is GGUF ne = [cols, rows]: cols is the input dimension.
        return (rng.standard_normal((rows, cols)) * 0.05).astype(matrix_dtype)

    def norm() -> np.ndarray:
        return np.ones(s.n_embd, dtype=np.float32)  # 1-D tensors stay F32, as llama.cpp keeps them

    tmp = temp_beside(path, ".tiny-")
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_name(name)
    w.add_context_length(s.n_ctx)
    w.add_embedding_length(s.n_embd)
    w.add_block_count(s.n_layer)
    w.add_feed_forward_length(s.n_ff)
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(n_vocab)
    w.add_file_type(ftype)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    w.add_tensor("token_embd.weight", matrix(n_vocab, s.n_embd))
    for i in range(s.n_layer):
        b = f"blk.{i}"
        w.add_tensor(f"{b}.attn_norm.weight", norm())
        w.add_tensor(f"{b}.attn_q.weight", matrix(s.n_head * head_dim, s.n_embd))
        w.add_tensor(f"{b}.attn_k.weight", matrix(s.n_head_kv * head_dim, s.n_embd))
        w.add_tensor(f"{b}.attn_v.weight", matrix(s.n_head_kv * head_dim, s.n_embd))
        w.add_tensor(f"{b}.attn_output.weight", matrix(s.n_embd, s.n_head * head_dim))
        w.add_tensor(f"{b}.ffn_norm.weight", norm())
        w.add_tensor(f"{b}.ffn_gate.weight", matrix(s.n_ff, s.n_embd))
        w.add_tensor(f"{b}.ffn_up.weight", matrix(s.n_ff, s.n_embd))
        w.add_tensor(f"{b}.ffn_down.weight", matrix(s.n_embd, s.n_ff))
    w.add_tensor("output_norm.weight", norm())
    w.add_tensor("output.weight", matrix(n_vocab, s.n_embd))

    return finish(w, tmp, path)


def temp_beside(path: str, prefix: str) -> str:
    """A new temporary file in ``path``'s directory, for an atomic write of ``path``."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=prefix)
    os.close(fd)
    return tmp


def finish(w: Any, tmp: str, path: str) -> str:
    """Write a filled GGUFWriter to ``tmp``, then move it to ``path``; nothing half-written
    is left behind on failure."""
    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, path)
    except BaseException:
        w.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def cached(directory: str, *, ftype: int = FTYPE_F16, shape: TinyShape = TinyShape(),
           seed: int = 0) -> str:
    """The model under ``directory``, written once (the bytes depend only on the arguments)."""
    kind = "f16" if ftype == FTYPE_F16 else "f32"
    name = (f"tiny-llama-{kind}-e{shape.n_embd}-h{shape.n_head}-kv{shape.n_head_kv}"
            f"-ff{shape.n_ff}-l{shape.n_layer}-c{shape.n_ctx}-s{seed}.gguf")
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        os.makedirs(directory, exist_ok=True)
        write(path, ftype=ftype, shape=shape, seed=seed)
    return path


if __name__ == "__main__":
    kind = sys.argv[2] if len(sys.argv) > 2 else "f16"
    write(sys.argv[1], ftype=FTYPE_F32 if kind == "f32" else FTYPE_F16)


def write_lora(path: str, *, shape: TinyShape = TinyShape(), rank: int = 8, alpha: float = 16.0,
               seed: int = 7) -> str:
    """A LoRA adapter GGUF for the tiny model (attn_q and attn_v of every block): large random
    low-rank updates, so greedy output visibly changes when it is applied."""
    import gguf

    rng = np.random.default_rng(seed)
    s = shape
    head_dim = s.n_embd // s.n_head
    tmp = temp_beside(path, ".tinylora-")
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_type("adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", alpha)
    for i in range(s.n_layer):
        for name, n_out in (("attn_q", s.n_head * head_dim), ("attn_v", s.n_head_kv * head_dim)):
            # ggml shapes: lora_a ne=(n_in, rank), lora_b ne=(rank, n_out); numpy is reversed.
            w.add_tensor(f"blk.{i}.{name}.weight.lora_a",
                         rng.standard_normal((rank, s.n_embd)).astype(np.float32))
            w.add_tensor(f"blk.{i}.{name}.weight.lora_b",
                         rng.standard_normal((n_out, rank)).astype(np.float32))
    return finish(w, tmp, path)
