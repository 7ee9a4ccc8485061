"""Hugging Face model directories to GGUF: the decisions, as pure functions (issue 16).

What llama.cpp's ``convert_hf_to_gguf.py`` decides per architecture is decided here: which
``config.json`` architectures are supported and what GGUF architecture each becomes, the GGUF
metadata from the config, each Safetensors tensor's GGUF name (through a lookup the adapter
passes in: the ``gguf`` package's ``TensorNameMap``, the table llama.cpp's converter uses), and
the transforms a tensor needs on the way (the llama family's Q/K row permutation). The adapter
(adapters/hf_converter.py) reads the files, streams the tensors through these decisions and
writes the GGUF.

An unsupported architecture, a config without a field the architecture needs, a tensor the
architecture does not have, a missing tensor and a shape that disagrees with the config are
``BadRequest`` (400) naming the file and the tensor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import BadRequest

__all__ = [
    "ADAPTER_DIR_FILES", "ARCHITECTURES", "Arch", "F32_TENSORS", "KV", "LoraPlan",
    "MODEL_DIR_FILES", "NameLookup", "Piece", "TensorPlan", "Vocab", "WEIGHTS_SUFFIX",
    "arch_of_gguf", "architecture", "expected_shape", "is_adapter_dir", "is_model_dir",
    "is_sentencepiece_json", "keeps_f32", "lora_metadata", "metadata", "out_dtype", "parse_config",
    "permute", "plan_lora", "plan_tensors", "pre_tokenizer", "rope_factors", "sentencepiece_vocab",
    "unpermute", "vocab",
]


# A tensor's GGUF name from its Hugging Face name, or None (gguf's TensorNameMap.get_name with
# the ".weight"/".bias" suffixes), built by the adapter for an architecture and block count.
NameLookup = Callable[[str], "str | None"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Arch:
    hf: str  # config.json "architectures"[0]
    name: str  # GGUF general.architecture (llama.cpp's)
    permute_qk: bool = False  # llama.cpp's LlamaModel: Q/K rows reordered for its RoPE
    encoder: bool = False  # a BERT-style embedding model (WordPiece vocabulary, pooled)
    fused: bool = False  # Phi-3: one qkv_proj and one gate_up_proj per block
    gemma: bool = False  # Gemma 2/3: norms stored as w - 1, extra post-norms, soft-capping


ARCHITECTURES: Mapping[str, Arch] = {a.hf: a for a in (
    Arch(hf="LlamaForCausalLM", name="llama", permute_qk=True),
    Arch(hf="MistralForCausalLM", name="llama", permute_qk=True),
    Arch(hf="Qwen2ForCausalLM", name="qwen2"),
    Arch(hf="Qwen3ForCausalLM", name="qwen3"),
    Arch(hf="Phi3ForCausalLM", name="phi3", fused=True),
    Arch(hf="Gemma2ForCausalLM", name="gemma2", gemma=True),
    Arch(hf="Gemma3ForCausalLM", name="gemma3", gemma=True),
    Arch(hf="BertModel", name="bert", encoder=True),
    Arch(hf="BertForMaskedLM", name="bert", encoder=True),
)}

CONFIG = "config.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class KV:
    key: str
    value: Any
    kind: str  # "u32", "f32", "str", "bool"


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorPlan:
    source: str  # the Safetensors name
    name: str  # the GGUF name
    transform: str = ""  # "", "permute_q", "permute_k" or "plus_one"


def parse_config(raw: bytes, name: str = CONFIG) -> dict[str, Any]:
    """``config.json`` (or ``name``, e.g. ``adapter_config.json``): one JSON object."""
    return _json_object(raw, name)


def architecture(config: Mapping[str, Any]) -> Arch:
    """The supported architecture the config names; 400 naming it otherwise."""
    names = config.get("architectures")
    if not isinstance(names, list) or not names or not isinstance(names[0], str):
        raise BadRequest(f"{CONFIG}: no \"architectures\" list")
    arch = ARCHITECTURES.get(names[0])
    if arch is None:
        raise BadRequest(f"unsupported architecture {names[0]!r} (supported: "
                         f"{', '.join(sorted(ARCHITECTURES))})")
    return arch


def _int(config: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        if value is None:
            raise BadRequest(f"{CONFIG}: missing {key!r}")
        raise BadRequest(f"{CONFIG}: {key!r} must be a positive integer, not {value!r}")
    return value


def _float(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise BadRequest(f"{CONFIG}: {key!r} must be a positive number, not {value!r}")
    return float(value)


def _shape(config: Mapping[str, Any]) -> dict[str, int]:
    heads = _int(config, "num_attention_heads")
    hidden = _int(config, "hidden_size")
    out = {
        "hidden": hidden, "layers": _int(config, "num_hidden_layers"),
        "ffn": _int(config, "intermediate_size"), "heads": heads,
        "kv_heads": _int(config, "num_key_value_heads", heads),
        "vocab": _int(config, "vocab_size"),
        "head_dim": _int(config, "head_dim", hidden // heads),
    }
    if out["heads"] % out["kv_heads"]:
        raise BadRequest(f"{CONFIG}: num_attention_heads {heads} is not a multiple of "
                         f"num_key_value_heads {out['kv_heads']}")
    return out


def metadata(arch: Arch, config: Mapping[str, Any], pooling: int = 1) -> list[KV]:
    """The GGUF key/values of the model itself (the tokenizer's are the adapter's).
    ``pooling``: an encoder's pooling type (llama.cpp's: 1 mean, 2 CLS), from
    sentence-transformers' ``1_Pooling/config.json`` where the adapter finds one."""
    s = _shape(config)
    a = arch.name
    # What every architecture says: its name, context, widths, depth and heads.
    common = [
        KV(key="general.architecture", value=a, kind="str"),
        KV(key=f"{a}.context_length",
           value=_int(config, "max_position_embeddings", 512 if arch.encoder else 4096),
           kind="u32"),
        KV(key=f"{a}.embedding_length", value=s["hidden"], kind="u32"),
        KV(key=f"{a}.block_count", value=s["layers"], kind="u32"),
        KV(key=f"{a}.feed_forward_length", value=s["ffn"], kind="u32"),
        KV(key=f"{a}.attention.head_count", value=s["heads"], kind="u32"),
    ]
    if arch.encoder:
        return common + [
            KV(key=f"{a}.attention.layer_norm_epsilon",
               value=_float(config, "layer_norm_eps", 1e-12), kind="f32"),
            KV(key=f"{a}.attention.causal", value=False, kind="bool"),
            KV(key=f"{a}.pooling_type", value=pooling, kind="u32"),
            KV(key="tokenizer.ggml.token_type_count",
               value=_int(config, "type_vocab_size", 2), kind="u32"),
        ]
    extra: list[KV] = _rope_scaling(config, a)
    if arch.gemma:
        extra.append(KV(key=f"{a}.attention.sliding_window",
                        value=_int(config, "sliding_window", 4096), kind="u32"))
        for key in ("attn_logit_softcapping", "final_logit_softcapping"):
            if config.get(key) is not None:
                extra.append(KV(key=f"{a}.{key}", value=_float(config, key, 1.0), kind="f32"))
    return extra + common + [
        KV(key=f"{a}.attention.head_count_kv", value=s["kv_heads"], kind="u32"),
        KV(key=f"{a}.attention.key_length", value=s["head_dim"], kind="u32"),
        KV(key=f"{a}.attention.value_length", value=s["head_dim"], kind="u32"),
        KV(key=f"{a}.rope.dimension_count", value=s["head_dim"], kind="u32"),
        KV(key=f"{a}.rope.freq_base", value=_float(config, "rope_theta", 10000.0), kind="f32"),
        KV(key=f"{a}.attention.layer_norm_rms_epsilon",
           value=_float(config, "rms_norm_eps", 1e-6), kind="f32"),
        KV(key=f"{a}.vocab_size", value=s["vocab"], kind="u32"),
    ]


def _rope_scaling(config: Mapping[str, Any], a: str) -> list[KV]:
    """``rope_scaling`` as llama.cpp's keys: linear and YaRN (factor, original context);
    Llama 3's scaling is a tensor instead (``rope_factors``)."""
    scaling = config.get("rope_scaling")
    if not isinstance(scaling, dict):
        return []
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind not in ("linear", "yarn"):
        return []
    out = [KV(key=f"{a}.rope.scaling.type", value=kind, kind="str"),
           KV(key=f"{a}.rope.scaling.factor", value=_float(scaling, "factor", 1.0),
              kind="f32")]
    if kind == "yarn" and scaling.get("original_max_position_embeddings") is not None:
        out.append(KV(key=f"{a}.rope.scaling.original_context_length",
                      value=_int(scaling, "original_max_position_embeddings"), kind="u32"))
    return out


def rope_factors(config: Mapping[str, Any]) -> list[float] | None:
    """Llama 3.1's ``rope_scaling`` (``rope_type: llama3``) as the ``rope_freqs.weight``
    tensor llama.cpp's converter computes (LlamaModel.generate_extra_tensors); None without it."""
    scaling = config.get("rope_scaling")
    if not isinstance(scaling, dict) or scaling.get("rope_type",
                                                    scaling.get("type")) != "llama3":
        return None
    s = _shape(config)
    base = _float(config, "rope_theta", 10000.0)
    factor = _float(scaling, "factor", 8.0)
    low = _float(scaling, "low_freq_factor", 1.0)
    high = _float(scaling, "high_freq_factor", 4.0)
    old = _float(scaling, "original_max_position_embeddings", 8192)
    if high <= low:
        raise BadRequest(f"{CONFIG}: rope_scaling high_freq_factor must exceed "
                         "low_freq_factor")
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    dim = s["head_dim"]
    for i in range(0, dim, 2):
        wavelen = 2 * 3.141592653589793 / (1.0 / base ** (i / dim))
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return out


def expected_shape(arch: Arch, config: Mapping[str, Any], name: str) -> tuple[int, ...] | None:
    """The Hugging Face (row-major) shape the config implies for GGUF tensor ``name``; None
    for tensors whose shape it does not fix."""
    s = _shape(config)
    q, kv = s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    base = name.rsplit(".", 1)[0].split(".", 2)[-1] if name.startswith("blk.") else \
        name.rsplit(".", 1)[0]
    shapes = {
        "token_embd": (s["vocab"], s["hidden"]), "output": (s["vocab"], s["hidden"]),
        "output_norm": (s["hidden"],), "attn_norm": (s["hidden"],), "ffn_norm": (s["hidden"],),
        "attn_q": (q, s["hidden"]), "attn_k": (kv, s["hidden"]), "attn_v": (kv, s["hidden"]),
        "attn_output": (s["hidden"], q), "ffn_gate": (s["ffn"], s["hidden"]),
        "ffn_up": ((2 if arch.fused else 1) * s["ffn"], s["hidden"]),
        "ffn_down": (s["hidden"], s["ffn"]), "attn_qkv": (q + 2 * kv, s["hidden"]),
        "attn_q_norm": (s["head_dim"],), "attn_k_norm": (s["head_dim"],),
        "position_embd": (_int(config, "max_position_embeddings", 512), s["hidden"]),
        "token_embd_norm": (s["hidden"],), "attn_output_norm": (s["hidden"],),
        "layer_output_norm": (s["hidden"],), "post_attention_norm": (s["hidden"],),
        "post_ffw_norm": (s["hidden"],),
    }
    shape = shapes.get(base)
    if shape is not None and name.endswith(".bias"):
        return shape[:1]  # a bias has a weight's rows
    return shape


def plan_tensors(arch: Arch, config: Mapping[str, Any], names: Iterable[str],
                 lookup: NameLookup,
                 where: Mapping[str, str] | None = None) -> list[TensorPlan]:
    """Each Safetensors tensor's GGUF name and transform, in GGUF order (by block).

    ``where`` maps a tensor to its file, for errors. Rotary caches (``rotary_emb.inv_freq``)
    are dropped, as llama.cpp's converter drops them; anything else the architecture does not
    have is a 400 naming it. A missing embedding, norm or block tensor is a 400 too.
    """
    s = _shape(config)
    where = where or {}
    plans: list[TensorPlan] = []
    for source in names:
        if source.endswith(".rotary_emb.inv_freq"):
            continue
        if arch.encoder:  # the pooler and the masked-LM head are not part of the embedder
            source_name = source.removeprefix("bert.")
            if source_name.startswith(("pooler.", "cls.")) or source_name.endswith(
                    "position_ids"):
                continue
        else:
            source_name = source
        name = lookup(source_name)
        if name is None:
            file = where.get(source, "the model's files")
            raise BadRequest(f"{file}: tensor {source!r} is not part of a {arch.hf} model")
        transform = ""
        if arch.gemma and name.endswith("norm.weight"):
            transform = "plus_one"  # Gemma's RMSNorm scales by (1 + w); llama.cpp's by w
        elif arch.permute_qk and name.endswith("attn_q.weight"):
            transform = "permute_q"
        elif arch.permute_qk and name.endswith("attn_k.weight"):
            transform = "permute_k"
        plans.append(TensorPlan(source=source, name=name, transform=transform))
    present = {p.name for p in plans}
    if arch.encoder:
        required = ["token_embd.weight", "position_embd.weight", "token_embd_norm.weight"] + [
            f"blk.{i}.{t}.weight" for i in range(s["layers"])
            for t in ("attn_q", "attn_k", "attn_v", "attn_output", "attn_output_norm",
                      "ffn_up", "ffn_down", "layer_output_norm")]
    elif arch.gemma:
        required = ["token_embd.weight", "output_norm.weight"] + [
            f"blk.{i}.{t}.weight" for i in range(s["layers"])
            for t in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                      "post_attention_norm", "ffn_norm", "post_ffw_norm", "ffn_gate", "ffn_up",
                      "ffn_down")]
    elif arch.fused:
        required = ["token_embd.weight", "output_norm.weight", "output.weight"] + [
            f"blk.{i}.{t}.weight" for i in range(s["layers"])
            for t in ("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down")]
    else:
        required = ["token_embd.weight", "output_norm.weight"] + [
            f"blk.{i}.{t}.weight" for i in range(s["layers"])
            for t in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm",
                      "ffn_gate", "ffn_up", "ffn_down")]
    for name in required:
        if name not in present:
            raise BadRequest(f"the model's files have no tensor for {name!r} "
                             f"({arch.hf}, {s['layers']} layers)")
    if len(present) != len(plans):
        raise BadRequest("two tensors of the model's files map to one GGUF tensor")
    return sorted(plans, key=_order)


def _order(plan: TensorPlan) -> tuple[int, str]:
    if plan.name.startswith("blk."):
        return int(plan.name.split(".")[1]), plan.name
    return (-1 if plan.name.startswith("token_embd") else 1 << 30), plan.name


# Tensors llama.cpp adds to F32 activations (ggml's CPU add takes no F16 operand): kept F32 as
# its converter keeps them.
F32_TENSORS = frozenset({"position_embd.weight", "token_types.weight"})


def keeps_f32(name: str, shape: tuple[int, ...]) -> bool:
    """Whether GGUF tensor ``name`` is written F32 rather than 16-bit: norms and biases (one
    dimension) and ``F32_TENSORS``."""
    return len(shape) < 2 or name in F32_TENSORS


def out_dtype(name: str, shape: tuple[int, ...], bf16_source: bool) -> str:
    """The GGUF type of a converted tensor (llama.cpp's ``--outtype auto``): F32 where
    ``keeps_f32``, else BF16 when the model's sources are BF16, else F16."""
    if keeps_f32(name, shape):
        return "F32"
    return "BF16" if bf16_source else "F16"


# The files of a model directory and of a PEFT LoRA directory that ``create`` sends (Ollama's
# CLI filesForModel), besides the ``*.safetensors`` weights.
WEIGHTS_SUFFIX = ".safetensors"
MODEL_DIR_FILES = frozenset({
    "config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
    "special_tokens_map.json", "generation_config.json", "added_tokens.json",
    "model.safetensors.index.json"})
ADAPTER_DIR_FILES = frozenset({"adapter_config.json"})


def is_model_dir(names: Iterable[str]) -> bool:
    """``files`` of a create that are a Hugging Face directory (weights in Safetensors)."""
    names = list(names)
    return CONFIG in names and any(n.endswith(WEIGHTS_SUFFIX) for n in names)


def is_adapter_dir(names: Iterable[str]) -> bool:
    """``adapters`` of a create that are a PEFT LoRA directory."""
    names = list(names)
    return "adapter_config.json" in names and any(n.endswith(WEIGHTS_SUFFIX) for n in names)


def permute(w: np.ndarray[Any, Any], n_head: int) -> np.ndarray[Any, Any]:
    """llama.cpp's ``LlamaModel.permute``: Hugging Face's Q/K rows to GGUF's."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]) \
        .swapaxes(1, 2).reshape(w.shape)


def unpermute(w: np.ndarray[Any, Any], n_head: int) -> np.ndarray[Any, Any]:
    """The inverse of ``permute``."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]) \
        .swapaxes(1, 2).reshape(w.shape)


# ---------------------------------------------------------------------------------------------
# The tokenizer (tokenizer.json, tokenizer_config.json)

TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"

# GGUF token types (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Split patterns of known byte-level BPE pre-tokenizers, and llama.cpp's name for each
# (convert_hf_to_gguf.py identifies them by hashing their output; the pattern says the same).
_SPLIT_PATTERNS = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "llama-bpe",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "qwen2",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Vocab:
    """What GGUF's ``tokenizer.*`` keys say."""

    model: str  # tokenizer.ggml.model
    pre: str  # tokenizer.ggml.pre
    tokens: tuple[str, ...]
    types: tuple[int, ...]
    merges: tuple[str, ...]
    bos: int | None = None
    eos: int | None = None
    unk: int | None = None
    pad: int | None = None
    add_bos: bool | None = None
    add_eos: bool | None = None
    chat_template: str | None = None
    scores: tuple[float, ...] = ()  # SentencePiece's, per token


def pre_tokenizer(pre: Any) -> str:
    """llama.cpp's name for a byte-level BPE pre-tokenizer, from tokenizer.json's
    ``pre_tokenizer``; ``default`` when it is none of the known ones."""
    steps = pre.get("pretokenizers", [pre]) if isinstance(pre, dict) else []
    kinds = [s.get("type") for s in steps if isinstance(s, dict)]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"
    for step in steps:
        if isinstance(step, dict) and step.get("type") == "Split":
            pattern = step.get("pattern", {})
            regex = pattern.get("Regex") if isinstance(pattern, dict) else None
            if regex in _SPLIT_PATTERNS:
                return _SPLIT_PATTERNS[regex]
    return "default"


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _wordpiece(tok: Mapping[str, Any], tok_config: Mapping[str, Any], size: int) -> Vocab:
    """A BERT WordPiece vocabulary as llama.cpp's ``bert`` tokenizer takes it (its
    BertModel.set_vocab): ``##x`` continuation pieces lose the ``##``, other words get the
    phantom space ``▁``, ``[X]`` specials stay and are CONTROL; [CLS] is BOS, [SEP] EOS."""
    table = tok["model"].get("vocab")
    if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in table.items()):
        raise BadRequest(f"{TOKENIZER}: model.vocab must map tokens to ids")
    if table and max(table.values()) >= size:
        raise BadRequest(f"{TOKENIZER}: token id {max(table.values())} is beyond vocab_size "
                         f"{size}")
    by_id = {i: t for t, i in table.items()}
    tokens, types = [], []
    for i in range(size):
        t = by_id.get(i)
        if t is None:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        elif t.startswith("[") and t.endswith("]"):
            tokens.append(t)
            types.append(CONTROL)
        else:
            tokens.append(t[2:] if t.startswith("##") else "\u2581" + t)
            types.append(NORMAL)

    def special(name: str, default: str) -> int | None:
        text = _token_text(tok_config.get(name)) or default
        return table.get(text)

    return Vocab(model="bert", pre="default", tokens=tuple(tokens), types=tuple(types),
                 merges=(), bos=special("cls_token", "[CLS]"),
                 eos=special("sep_token", "[SEP]"), unk=special("unk_token", "[UNK]"),
                 pad=special("pad_token", "[PAD]"), add_bos=True, add_eos=True)


def vocab(tokenizer_raw: bytes, tokenizer_config_raw: bytes | None,
          config: Mapping[str, Any]) -> Vocab:
    """The GGUF vocabulary of a byte-level BPE ``tokenizer.json`` (GPT-2, Llama 3, Qwen2,
    SmolLM): its tokens padded to the config's ``vocab_size`` (the padding ``UNUSED``, as
    llama.cpp pads), added tokens ``CONTROL`` when special else ``USER_DEFINED``, the merges,
    the special token ids and the chat template."""
    tok = _json_object(tokenizer_raw, TOKENIZER)
    tok_config = _json_object(tokenizer_config_raw, TOKENIZER_CONFIG) \
        if tokenizer_config_raw is not None else {}
    model = tok.get("model")
    if isinstance(model, dict) and model.get("type") == "WordPiece":
        return _wordpiece(tok, tok_config, _int(config, "vocab_size"))
    if not isinstance(model, dict) or model.get("type") != "BPE":
        kind = model.get("type") if isinstance(model, dict) else None
        raise BadRequest(f"{TOKENIZER}: unsupported tokenizer model {kind!r} "
                         "(BPE and WordPiece are)")
    table = model.get("vocab")
    if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in table.items()):
        raise BadRequest(f"{TOKENIZER}: model.vocab must map tokens to ids")
    by_id: dict[int, tuple[str, int]] = {i: (t, NORMAL) for t, i in table.items()}
    added = tok.get("added_tokens", [])
    if not isinstance(added, list):
        raise BadRequest(f"{TOKENIZER}: added_tokens must be a list")
    for entry in added:
        if not (isinstance(entry, dict) and isinstance(entry.get("id"), int)
                and isinstance(entry.get("content"), str)):
            raise BadRequest(f"{TOKENIZER}: an added token needs an id and a content")
        by_id[entry["id"]] = (entry["content"], CONTROL if entry.get("special") else
                              USER_DEFINED)
    size = _int(config, "vocab_size")
    if by_id and max(by_id) >= size:
        raise BadRequest(f"{TOKENIZER}: token id {max(by_id)} is beyond vocab_size {size}")
    tokens = [by_id.get(i, (f"[PAD{i}]", UNUSED)) for i in range(size)]
    merges = []
    for merge in model.get("merges", []):
        if isinstance(merge, str):
            merges.append(merge)
        elif isinstance(merge, list) and len(merge) == 2 and all(isinstance(m, str)
                                                                 for m in merge):
            merges.append(f"{merge[0]} {merge[1]}")
        else:
            raise BadRequest(f"{TOKENIZER}: a merge must be \"a b\" or [a, b]")
    ids = {text: i for i, (text, _) in enumerate(tokens)}

    def special(name: str, config_key: str) -> int | None:
        text = _token_text(tok_config.get(name))
        if text is not None and text in ids:
            return ids[text]
        value = config.get(config_key)
        return value if isinstance(value, int) and 0 <= value < size else None

    template = tok_config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if isinstance(t, dict)
                         and t.get("name") == "default"), None)
    add_bos, add_eos = tok_config.get("add_bos_token"), tok_config.get("add_eos_token")
    return Vocab(
        model="gpt2", pre=pre_tokenizer(tok.get("pre_tokenizer")),
        tokens=tuple(t for t, _ in tokens), types=tuple(k for _, k in tokens),
        merges=tuple(merges), bos=special("bos_token", "bos_token_id"),
        eos=special("eos_token", "eos_token_id"), unk=special("unk_token", "unk_token_id"),
        pad=special("pad_token", "pad_token_id"),
        add_bos=add_bos if isinstance(add_bos, bool) else None,
        add_eos=add_eos if isinstance(add_eos, bool) else None,
        chat_template=template if isinstance(template, str) else None)


SENTENCEPIECE = "tokenizer.model"


@dataclass(frozen=True, slots=True, kw_only=True)
class Piece:
    """One entry of a SentencePiece model, as the adapter read it."""

    text: str
    score: float
    kind: int  # the GGUF token type: NORMAL, UNKNOWN, CONTROL, UNUSED or BYTE


def sentencepiece_vocab(pieces: list[Piece], tokenizer_config_raw: bytes | None,
                        config: Mapping[str, Any]) -> Vocab:
    """A SentencePiece ``tokenizer.model`` (Llama 2, Mistral v0.1) as llama.cpp's ``llama``
    tokenizer (its _set_vocab_sentencepiece): the pieces with their scores and types, padded
    to ``vocab_size`` with ``[PADi]`` UNUSED, special ids from tokenizer_config.json (else the
    config), BOS added unless it says otherwise."""
    tok_config = _json_object(tokenizer_config_raw, TOKENIZER_CONFIG) \
        if tokenizer_config_raw is not None else {}
    size = _int(config, "vocab_size")
    if len(pieces) > size:
        raise BadRequest(f"{SENTENCEPIECE}: {len(pieces)} pieces are more than vocab_size "
                         f"{size}")
    padded = list(pieces) + [Piece(text=f"[PAD{i}]", score=-1000.0, kind=UNUSED)
                             for i in range(len(pieces), size)]
    ids = {p.text: i for i, p in enumerate(padded)}

    def special(name: str, config_key: str) -> int | None:
        text = _token_text(tok_config.get(name))
        if text is not None and text in ids:
            return ids[text]
        value = config.get(config_key)
        return value if isinstance(value, int) and 0 <= value < size else None

    add_bos, add_eos = tok_config.get("add_bos_token", True), tok_config.get("add_eos_token")
    template = tok_config.get("chat_template")
    return Vocab(
        model="llama", pre="default", tokens=tuple(p.text for p in padded),
        types=tuple(p.kind for p in padded), merges=(), scores=tuple(p.score for p in padded),
        bos=special("bos_token", "bos_token_id"), eos=special("eos_token", "eos_token_id"),
        unk=special("unk_token", "unk_token_id"), pad=special("pad_token", "pad_token_id"),
        add_bos=add_bos if isinstance(add_bos, bool) else True,
        add_eos=add_eos if isinstance(add_eos, bool) else None,
        chat_template=template if isinstance(template, str) else None)


def is_sentencepiece_json(tokenizer_raw: bytes) -> bool:
    """A ``tokenizer.json`` that is SentencePiece's BPE in Hugging Face's dress (byte
    fallback, ``▁`` for spaces), not byte-level BPE: ``tokenizer.model`` is the one to read."""
    try:
        tok = json.loads(tokenizer_raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    model = tok.get("model") if isinstance(tok, dict) else None
    return isinstance(model, dict) and model.get("type") == "BPE" and bool(
        model.get("byte_fallback"))


def _json_object(raw: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"{name}: not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{name}: not a JSON object")
    return value


# ---------------------------------------------------------------------------------------------
# LoRA adapters (PEFT: adapter_config.json, adapter_model.safetensors)

ADAPTER_CONFIG = "adapter_config.json"
_PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True, slots=True, kw_only=True)
class LoraPlan:
    source_a: str  # the Safetensors names of the two factors
    source_b: str
    name: str  # the base model's GGUF tensor; the factors are ``name + ".lora_a"/".lora_b"``
    permute_heads: int = 0  # B's rows permuted as the base's Q/K rows were (0: not)


def lora_metadata(adapter_config: Mapping[str, Any], arch_name: str) -> list[KV]:
    """A GGUF LoRA's key/values (llama.cpp's convert_lora_to_gguf.py): ``alpha`` from the
    PEFT config (llama.cpp scales by alpha / rank)."""
    if adapter_config.get("peft_type", "LORA") != "LORA":
        raise BadRequest(f"{ADAPTER_CONFIG}: unsupported adapter type "
                         f"{adapter_config.get('peft_type')!r} (LORA is)")
    alpha = adapter_config.get("lora_alpha")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
        raise BadRequest(f"{ADAPTER_CONFIG}: 'lora_alpha' must be a positive number")
    return [KV(key="general.architecture", value=arch_name, kind="str"),
            KV(key="general.type", value="adapter", kind="str"),
            KV(key="adapter.type", value="lora", kind="str"),
            KV(key="adapter.lora.alpha", value=float(alpha), kind="f32")]


def arch_of_gguf(name: str) -> Arch:
    """The architecture of a LoRA's base model, whose GGUF ``general.architecture`` is
    ``name``: a decoder (LoRAs for encoders are not converted)."""
    decoders = [a for a in ARCHITECTURES.values() if not a.encoder]
    for arch in decoders:
        if arch.name == name:
            return arch
    raise BadRequest(f"LoRA adapters for {name!r} models are not supported (supported: "
                     f"{', '.join(sorted({a.name for a in decoders}))})")


def plan_lora(arch: Arch, names: Iterable[str], lookup: NameLookup, heads: int, kv_heads: int,
              file: str = "adapter_model.safetensors") -> list[LoraPlan]:
    """Pair each ``lora_A``/``lora_B`` and name the base tensor it adapts; a stray or unpaired
    tensor is a 400 naming it."""
    pairs: dict[str, dict[str, str]] = {}
    for source in names:
        base = source.removeprefix(_PEFT_PREFIX)
        for side in ("A", "B"):
            suffix = f".lora_{side}.weight"
            if base.endswith(suffix):
                pairs.setdefault(base[:-len(suffix)], {})[side] = source
                break
        else:
            raise BadRequest(f"{file}: tensor {source!r} is not a LoRA factor "
                             "(lora_A/lora_B)")
    plans = []
    for module, sides in sorted(pairs.items()):
        if set(sides) != {"A", "B"}:
            missing = "lora_B" if "A" in sides else "lora_A"
            raise BadRequest(f"{file}: {module!r} has no {missing}")
        name = lookup(module + ".weight")
        if name is None:
            raise BadRequest(f"{file}: tensor {sides['A']!r} adapts {module!r}, which a "
                             f"{arch.hf} model does not have")
        heads_for = 0
        if arch.permute_qk and name.endswith("attn_q.weight"):
            heads_for = heads
        elif arch.permute_qk and name.endswith("attn_k.weight"):
            heads_for = kv_heads
        plans.append(LoraPlan(source_a=sides["A"], source_b=sides["B"], name=name,
                              permute_heads=heads_for))
    if not plans:
        raise BadRequest(f"{file}: no LoRA tensors")
    return sorted(plans, key=lambda p: _order(TensorPlan(source="", name=p.name)))
