"""A Hugging Face model directory rebuilt from a llama GGUF, for the ``pollama create`` tests of
the Safetensors converter (issue 16): no network, no torch.

``write_hf_model(gguf, out)`` writes what ``LlamaForCausalLM.save_pretrained`` plus the fast
tokenizer's ``save_pretrained`` would: ``config.json``, ``generation_config.json``, the weights
(``model.safetensors``, or ``model-0000i-of-0000N.safetensors`` and
``model.safetensors.index.json``), ``tokenizer.json``, ``tokenizer_config.json`` and
``special_tokens_map.json``. Values come from the GGUF's metadata; weights are dequantized with
the ``gguf`` package a few MB at a time and streamed into the safetensors files, so memory
stays near what ``GGUFReader`` itself takes (about 300 MB peak for SmolLM2 in F32).

Two things undo what llama.cpp's ``convert_hf_to_gguf.py`` did:

- shapes: a GGUF tensor with ``ne = [in, out]`` is numpy/HF ``[out, in]``; ``GGUFReader`` plus
  ``gguf.quants.dequantize`` already give the numpy order, so no transpose is needed;
- rows of ``q_proj`` and ``k_proj``: ``LlamaModel.permute`` interleaves each head's two rotary
  halves (HF's rotate_half pairs ``i, i + d/2``; ggml's NORM rope pairs ``2i, 2i + 1``).
  ``unpermute`` is its inverse (``n_head`` is ``num_key_value_heads`` for ``k_proj``).

Only the llama architecture with a GPT-2 style byte-level BPE vocabulary
(``tokenizer.ggml.model == "gpt2"``) is supported, which is what SmolLM2 is.

    python -m tests.hfmodel model.gguf out_dir [F32|F16|BF16] [shards]
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DTYPES", "permute", "unpermute", "to_bf16", "write_safetensors", "write_hf_model",
           "write_tokenizer", "hf_name", "gguf_reader"]

TRANSFORMERS_VERSION = "4.46.0"

# dtype argument -> (safetensors dtype, numpy storage dtype, config.json torch_dtype)
DTYPES: dict[str, tuple[str, type[np.generic], str]] = {
    "F32": ("F32", np.float32, "float32"),
    "F16": ("F16", np.float16, "float16"),
    "BF16": ("BF16", np.uint16, "bfloat16"),
}

# GGUF token types (llama.cpp's llama_token_type / gguf.TokenType)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 2, 3, 4

# tokenizer.ggml.pre values whose llama.cpp pre-tokenizer regexes are the GPT-2 one, preceded by
# splitting every digit (``\p{N}``) for the StarCoder family (SmolLM's tokenizer is StarCoder's).
_PRE_TOKENIZERS = {"gpt-2": False, "smollm": True, "starcoder": True, "refact": True}


def permute(w: npt.NDArray[Any], n_head: int) -> npt.NDArray[Any]:
    """llama.cpp's ``LlamaModel.permute`` (HF -> GGUF) on the rows of ``w``."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute(w: npt.NDArray[Any], n_head: int) -> npt.NDArray[Any]:
    """The inverse of ``permute`` (GGUF -> HF)."""
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def to_bf16(a: npt.NDArray[Any]) -> npt.NDArray[np.uint16]:
    """bfloat16 bits (as uint16) of ``a``: float32's top half, rounded to nearest even; NaN
    stays a (quiet) NaN."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
               >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        rounded[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return rounded


def _cast(a: npt.NDArray[Any], dtype: str) -> npt.NDArray[Any]:
    if dtype == "BF16":
        return to_bf16(a)
    return np.ascontiguousarray(a, dtype=DTYPES[dtype][1])


@dataclass(frozen=True, slots=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]
    load: Callable[[], Iterable[npt.NDArray[Any]]]  # float32 values, HF layout, in row blocks

    def nbytes(self, dtype: str) -> int:
        return math.prod(self.shape) * np.dtype(DTYPES[dtype][1]).itemsize


def _whole(a: npt.NDArray[Any]) -> Callable[[], Iterable[npt.NDArray[Any]]]:
    return lambda: [a]


def write_safetensors(path: str, tensors: Iterable[_Tensor] | dict[str, npt.NDArray[Any]],
                      dtype: str = "F32", metadata: dict[str, str] | None = None) -> int:
    """Stream ``tensors`` (in order) to a safetensors file as ``dtype``; returns the data size.
    The header is padded with spaces to a multiple of 8 bytes, as the safetensors crate does."""
    if isinstance(tensors, dict):
        tensors = [_Tensor(k, tuple(v.shape), _whole(v)) for k, v in tensors.items()]
    tensors = list(tensors)
    header: dict[str, Any] = {"__metadata__": metadata if metadata is not None
                              else {"format": "pt"}}
    offset = 0
    for t in tensors:
        size = t.nbytes(dtype)
        header[t.name] = {"dtype": DTYPES[dtype][0], "shape": list(t.shape),
                          "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for t in tensors:
            start = f.tell()
            for block in t.load():
                if tuple(block.shape[1:]) != t.shape[1:]:
                    raise ValueError(f"{t.name}: rows of shape {block.shape[1:]}, header says "
                                     f"{t.shape[1:]}")
                f.write(_cast(block, dtype).data.cast("B"))
            if f.tell() - start != t.nbytes(dtype):
                raise ValueError(f"{t.name}: wrote {f.tell() - start} bytes, header says "
                                 f"{t.nbytes(dtype)}")
    return offset


def hf_name(gguf_name: str) -> str:
    """The Hugging Face llama name of a GGUF tensor name."""
    top = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight":
           "model.norm.weight", "output.weight": "lm_head.weight"}
    if gguf_name in top:
        return top[gguf_name]
    blk, i, rest = gguf_name.split(".", 2)
    per_layer = {
        "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
        "attn_v.weight": "self_attn.v_proj.weight",
        "attn_output.weight": "self_attn.o_proj.weight",
        "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
        "ffn_down.weight": "mlp.down_proj.weight", "attn_norm.weight": "input_layernorm.weight",
        "ffn_norm.weight": "post_attention_layernorm.weight",
    }
    if blk != "blk" or rest not in per_layer:
        raise ValueError(f"no Hugging Face name for GGUF tensor {gguf_name!r}")
    return f"model.layers.{int(i)}.{per_layer[rest]}"


_BLOCK = 1 << 22  # GGUF bytes dequantized at a time

_LAYER_ORDER = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm",
                "post_attention_layernorm")


def _order(name: str) -> tuple[int, int, int]:
    """state_dict order: embeddings, layers in order (attention, MLP, norms), norm, lm_head."""
    if name == "model.embed_tokens.weight":
        return (0, 0, 0)
    if name.startswith("model.layers."):
        _, _, i, rest = name.split(".", 3)
        return (1, int(i), _LAYER_ORDER.index(rest.rsplit(".", 1)[0]))
    return (2, 0 if name == "model.norm.weight" else 1, 0)


class _Gguf:
    def __init__(self, path: str) -> None:
        import gguf  # the test extra; imported here so the module imports without it

        self.gguf = gguf
        self.reader = gguf.GGUFReader(path)
        self.arch = str(self.get("general.architecture"))
        if self.arch != "llama":
            raise ValueError(f"only llama GGUFs are supported, not {self.arch!r}")

    def get(self, key: str, default: Any = None) -> Any:
        field = self.reader.fields.get(key)
        return default if field is None else field.contents()

    def arch_get(self, key: str, default: Any = None) -> Any:
        return self.get(f"{self.arch}.{key}", default)


def _f32(v: float) -> float | int:
    """A float32 metadata value as the decimal it was written from (9.99999974738e-06 ->
    1e-05); integral values as ints, as in the real config.json (rope_theta 100000)."""
    x = float(str(np.float32(v)))
    return int(x) if x.is_integer() else x


def _config(g: _Gguf, dtype: str) -> dict[str, Any]:
    n_embd = int(g.arch_get("embedding_length"))
    n_head = int(g.arch_get("attention.head_count"))
    n_head_kv = int(g.arch_get("attention.head_count_kv", n_head))
    head_dim = int(g.arch_get("attention.key_length", n_embd // n_head))
    tokens = g.get("tokenizer.ggml.tokens")
    tied = not any(t.name == "output.weight" for t in g.reader.tensors)
    config: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": g.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": g.get("tokenizer.ggml.eos_token_id"),
        "head_dim": head_dim,
        "hidden_act": "silu",
        "hidden_size": n_embd,
        "initializer_range": 0.02,
        "intermediate_size": int(g.arch_get("feed_forward_length")),
        "max_position_embeddings": int(g.arch_get("context_length")),
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": n_head,
        "num_hidden_layers": int(g.arch_get("block_count")),
        "num_key_value_heads": n_head_kv,
        "pretraining_tp": 1,
        "rms_norm_eps": _f32(g.arch_get("attention.layer_norm_rms_epsilon")),
        "rope_scaling": None,
        "rope_theta": _f32(g.arch_get("rope.freq_base", 10000.0)),
        "tie_word_embeddings": tied,
        "torch_dtype": DTYPES[dtype][2],
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": int(g.arch_get("vocab_size", len(tokens) if tokens else 0)),
    }
    pad = g.get("tokenizer.ggml.padding_token_id")
    if pad is not None:
        config["pad_token_id"] = pad
    return dict(sorted(config.items()))


def _tensors(g: _Gguf, config: dict[str, Any]) -> list[_Tensor]:
    n_head, n_head_kv = config["num_attention_heads"], config["num_key_value_heads"]
    out = []
    for t in g.reader.tensors:
        name = hf_name(t.name)
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))  # ne is [in, out]
        heads = (n_head if name.endswith("q_proj.weight")
                 else n_head_kv if name.endswith("k_proj.weight") else 0)

        def load(t: Any = t, heads: int = heads) -> Iterable[npt.NDArray[Any]]:
            def rows(data: Any) -> npt.NDArray[Any]:
                a: npt.NDArray[Any] = g.gguf.quants.dequantize(data, t.tensor_type)
                return a.astype(np.float32, copy=False)

            if heads:  # the permutation mixes rows within a head: one block
                yield unpermute(rows(t.data), heads)
                return
            step = max(1, _BLOCK // max(1, math.prod(t.data.shape[1:])))
            for i in range(0, max(1, t.data.shape[0]), step):  # bounds memory on embeddings
                yield rows(t.data[i:i + step])

        out.append(_Tensor(name, shape, load))
    return sorted(out, key=lambda t: _order(t.name))


def _split(tensors: list[_Tensor], shards: int, dtype: str) -> list[list[_Tensor]]:
    """Consecutive groups of about equal bytes, none empty."""
    if not 1 <= shards <= len(tensors):
        raise ValueError(f"shards must be between 1 and {len(tensors)}")
    total = sum(t.nbytes(dtype) for t in tensors)
    groups: list[list[_Tensor]] = [[] for _ in range(shards)]
    done, k = 0, 0
    for i, t in enumerate(tensors):
        left = len(tensors) - i
        if groups[k] and k < shards - 1 and (done >= total * (k + 1) / shards
                                             or left <= shards - 1 - k):
            k += 1
        groups[k].append(t)
        done += t.nbytes(dtype)
    return groups


def write_tokenizer(gguf_path: str, out_dir: str, *, merges_as_pairs: bool = False) -> None:
    """``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` from the
    GGUF's vocabulary. Merges are ``"a b"`` strings as in SmolLM2's own file (tokenizers < 0.20),
    or ``["a", "b"]`` pairs as newer tokenizers write them."""
    os.makedirs(out_dir, exist_ok=True)
    g = _gguf(gguf_path)
    model = g.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(f"only GPT-2 style BPE vocabularies are supported, not {model!r}")
    pre = g.get("tokenizer.ggml.pre", "gpt-2")
    if pre not in _PRE_TOKENIZERS:
        raise ValueError(f"unsupported tokenizer.ggml.pre {pre!r}")
    tokens: list[str] = list(g.get("tokenizer.ggml.tokens"))
    types: list[int] = list(g.get("tokenizer.ggml.token_type"))
    merges: list[str] = list(g.get("tokenizer.ggml.merges"))

    added = [{"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": ty == TOKEN_CONTROL}
             for i, (tok, ty) in enumerate(zip(tokens, types))
             if ty in (TOKEN_CONTROL, TOKEN_USER_DEFINED)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    pre_tokenizer: dict[str, Any] = byte_level
    if _PRE_TOKENIZERS[pre]:
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, byte_level]}

    def token(key: str) -> str | None:
        i = g.get(f"tokenizer.ggml.{key}_token_id")
        return None if i is None else tokens[int(i)]

    bos, eos, unk, pad = token("bos"), token("eos"), token("unknown"), token("padding")
    add_bos = g.get("tokenizer.ggml.add_bos_token")
    add_eos = g.get("tokenizer.ggml.add_eos_token")
    post: dict[str, Any] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                            "use_regex": True}
    if (add_bos and bos) or (add_eos and eos):  # HF's template for an added BOS and/or EOS
        ends = [(tok, "head") for tok in [bos] if add_bos and tok] + \
               [(tok, "tail") for tok in [eos] if add_eos and tok]

        def template(*seqs: tuple[str, int]) -> list[dict[str, Any]]:
            head = [{"SpecialToken": {"id": t, "type_id": 0}} for t, w in ends if w == "head"]
            tail = [{"SpecialToken": {"id": t, "type_id": 0}} for t, w in ends if w == "tail"]
            return head + [{"Sequence": {"id": s, "type_id": ty}} for s, ty in seqs] + tail

        post = {"type": "TemplateProcessing", "single": template(("A", 0)),
                "pair": template(("A", 0), ("B", 1)),
                "special_tokens": {t: {"id": t, "ids": [tokens.index(t)], "tokens": [t]}
                                   for t, _ in ends}}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {tok: i for i, tok in enumerate(tokens)},
                  "merges": [m.split(" ", 1) for m in merges] if merges_as_pairs else merges},
    }
    specials = {k: v for k, v in (("bos_token", bos), ("eos_token", eos), ("unk_token", unk),
                                  ("pad_token", pad)) if v is not None}
    config: dict[str, Any] = {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"}
                                 for a in added},
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(g.arch_get("context_length")),
        "tokenizer_class": "GPT2Tokenizer",
        "vocab_size": len(tokens),
        **specials,
    }
    if add_bos is not None:
        config["add_bos_token"] = bool(add_bos)
    if add_eos is not None:
        config["add_eos_token"] = bool(add_eos)
    template = g.get("tokenizer.chat_template")
    if template is not None:
        config["chat_template"] = template
    _dump(os.path.join(out_dir, "tokenizer.json"), tokenizer, indent=None)
    _dump(os.path.join(out_dir, "tokenizer_config.json"), dict(sorted(config.items())))
    _dump(os.path.join(out_dir, "special_tokens_map.json"), specials)


def _dump(path: str, obj: Any, indent: int | None = 2) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


@functools.lru_cache(maxsize=2)
def _open(path: str, mtime_ns: int, size: int) -> _Gguf:
    return _Gguf(path)


def _gguf(path: str) -> _Gguf:
    """The parsed GGUF, cached: GGUFReader takes seconds to build a 49k-token vocabulary's
    fields, more than the dequantization."""
    st = os.stat(path)
    return _open(os.path.abspath(path), st.st_mtime_ns, st.st_size)


def gguf_reader(path: str) -> Any:
    """The (cached) ``gguf.GGUFReader`` of ``path``, for tests comparing against the GGUF."""
    return _gguf(path).reader


def write_hf_model(gguf_path: str, out_dir: str, *, dtype: str = "F32",
                   shards: int = 1) -> None:
    """Write the Hugging Face directory equivalent to the llama GGUF at ``gguf_path``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    os.makedirs(out_dir, exist_ok=True)
    g = _gguf(gguf_path)
    config = _config(g, dtype)
    _dump(os.path.join(out_dir, "config.json"), config)
    generation = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                  if config.get(k) is not None}
    _dump(os.path.join(out_dir, "generation_config.json"),
          {"_from_model_config": True, **generation,
           "transformers_version": TRANSFORMERS_VERSION})
    tensors = _tensors(g, config)
    if shards == 1:
        write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors, dtype)
    else:
        weight_map: dict[str, str] = {}
        total = 0
        for i, group in enumerate(_split(tensors, shards, dtype), 1):
            fname = f"model-{i:05d}-of-{shards:05d}.safetensors"
            total += write_safetensors(os.path.join(out_dir, fname), group, dtype)
            weight_map.update((t.name, fname) for t in group)
        _dump(os.path.join(out_dir, "model.safetensors.index.json"),
              {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    write_tokenizer(gguf_path, out_dir)


if __name__ == "__main__":
    write_hf_model(sys.argv[1], sys.argv[2], dtype=sys.argv[3] if len(sys.argv) > 3 else "F32",
                   shards=int(sys.argv[4]) if len(sys.argv) > 4 else 1)
