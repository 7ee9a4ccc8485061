"""A tiny random Hugging Face model written by the tests: a llama (or qwen2) with a few small
layers and a byte-level BPE tokenizer of the 256 bytes plus a few merges and special tokens."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from gguf.vocab import bytes_to_unicode
from safetensors.numpy import save_file

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tiny_config(arch: str = "LlamaForCausalLM", **over: Any) -> dict[str, Any]:
    return {"architectures": [arch], "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
            "vocab_size": 272, "tie_word_embeddings": True, "bos_token_id": 1,
            "eos_token_id": 2, **over}


def tiny_weights(config: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    """Random weights in Hugging Face's names for the config's architecture: Qwen2 adds Q/K/V
    biases, Qwen3 per-head Q/K norms."""
    arch = config["architectures"][0]
    rng = np.random.default_rng(seed)
    h, f, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    d = h // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * d

    def w(*shape: int) -> np.ndarray[Any, Any]:
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    out = {"model.embed_tokens.weight": w(v, h), "model.norm.weight": np.ones(h, np.float32)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {p + "input_layernorm.weight": np.ones(h, np.float32),
                p + "post_attention_layernorm.weight": np.ones(h, np.float32),
                p + "self_attn.q_proj.weight": w(h, h), p + "self_attn.k_proj.weight": w(kv, h),
                p + "self_attn.v_proj.weight": w(kv, h), p + "self_attn.o_proj.weight": w(h, h),
                p + "mlp.gate_proj.weight": w(f, h), p + "mlp.up_proj.weight": w(f, h),
                p + "mlp.down_proj.weight": w(h, f)}
        if arch == "Qwen2ForCausalLM":
            out |= {p + "self_attn.q_proj.bias": w(h), p + "self_attn.k_proj.bias": w(kv),
                    p + "self_attn.v_proj.bias": w(kv)}
        if arch == "Phi3ForCausalLM":  # fused projections
            for name in ("q_proj", "k_proj", "v_proj"):
                del out[p + f"self_attn.{name}.weight"]
            del out[p + "mlp.gate_proj.weight"], out[p + "mlp.up_proj.weight"]
            out |= {p + "self_attn.qkv_proj.weight": w(h + 2 * kv, h),
                    p + "mlp.gate_up_proj.weight": w(2 * f, h)}
        if arch in ("Gemma2ForCausalLM", "Gemma3ForCausalLM"):  # norms stored as w - 1
            for norm in ("input_layernorm", "post_attention_layernorm",
                         "pre_feedforward_layernorm", "post_feedforward_layernorm"):
                out[p + norm + ".weight"] = np.zeros(h, np.float32)
        if arch == "Gemma3ForCausalLM":
            out |= {p + "self_attn.q_norm.weight": np.zeros(d, np.float32),
                    p + "self_attn.k_norm.weight": np.zeros(d, np.float32)}
        if arch == "Qwen3ForCausalLM":
            out |= {p + "self_attn.q_norm.weight": np.ones(d, np.float32),
                    p + "self_attn.k_norm.weight": np.ones(d, np.float32)}
    if arch == "Phi3ForCausalLM":
        out["lm_head.weight"] = w(v, h)
    return out


def tiny_tokenizer() -> dict[str, Any]:
    chars = bytes_to_unicode()
    vocab = {tok: i for i, tok in enumerate(SPECIAL)}
    for b in range(256):
        vocab[chars[b]] = len(vocab)
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    return {
        "version": "1.0",
        "added_tokens": [{"id": i, "content": t, "special": True, "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False}
                         for i, t in enumerate(SPECIAL)],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }


def write_tiny(out: str, config: dict[str, Any] | None = None,
               weights: dict[str, np.ndarray[Any, Any]] | None = None,
               bf16: bool = False) -> dict[str, str]:
    """Write the model into ``out``; its files by name."""
    os.makedirs(out, exist_ok=True)
    config = config or tiny_config()
    weights = tiny_weights(config) if weights is None else weights
    files = {"config.json": config, "tokenizer.json": tiny_tokenizer(),
             "tokenizer_config.json": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                                       "chat_template": "{{ messages[0]['content'] }}"}}
    for name, value in files.items():
        with open(os.path.join(out, name), "w") as f:
            json.dump(value, f)
    path = os.path.join(out, "model.safetensors")
    if bf16:
        bits = {k: ((v.astype(np.float32).view(np.uint32) + 0x8000) >> 16).astype(np.uint16)
                for k, v in weights.items()}
        save_file(bits, path)
        _retag(path, "U16", "BF16")
    else:
        save_file(weights, path)
    return {name: os.path.join(out, name) for name in os.listdir(out)}


def _retag(path: str, old: str, new: str) -> None:
    """Rewrite a safetensors header's dtype (offsets are relative to the data: they stay)."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = data[8:8 + n].decode().replace(f'"{old}"', f'"{new}"').encode()
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + data[8 + n:])


def write_lora(out: str, config: dict[str, Any], *, rank: int = 4, alpha: float = 8.0,
               zero: bool = False, seed: int = 1,
               modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj")) -> dict[str, str]:
    """A PEFT LoRA for the tiny model: random A and B (B zero with ``zero``) on ``modules``
    of every layer; its files by name."""
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    h = config["hidden_size"]
    d = h // config["num_attention_heads"]
    outs = {"q_proj": h, "k_proj": config["num_key_value_heads"] * d,
            "v_proj": config["num_key_value_heads"] * d, "o_proj": h}
    tensors = {}
    for i in range(config["num_hidden_layers"]):
        for m in modules:
            p = f"base_model.model.model.layers.{i}.self_attn.{m}"
            tensors[p + ".lora_A.weight"] = (rng.standard_normal((rank, h)) * 0.5).astype(
                np.float32)
            b = rng.standard_normal((outs[m], rank)) * 0.5
            tensors[p + ".lora_B.weight"] = (b * (0 if zero else 1)).astype(np.float32)
    save_file(tensors, os.path.join(out, "adapter_model.safetensors"))
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": rank, "lora_alpha": alpha,
                   "target_modules": list(modules), "base_model_name_or_path": "tiny"}, f)
    return {name: os.path.join(out, name) for name in os.listdir(out)}


BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "the",
              "cat", "sat", "on", "mat", ",", "."]


def tiny_bert_config(**over: Any) -> dict[str, Any]:
    return {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "max_position_embeddings": 64, "type_vocab_size": 2, "vocab_size": 16,
            "layer_norm_eps": 1e-12, **over}


def write_tiny_bert(out: str, config: dict[str, Any] | None = None, seed: int = 0,
                    prefix: str = "") -> dict[str, str]:
    """A tiny random BERT embedder with a WordPiece tokenizer; its files by name. ``prefix``
    ("bert." as BertForMaskedLM saves them) goes before every tensor name."""
    os.makedirs(out, exist_ok=True)
    config = config or tiny_bert_config()
    rng = np.random.default_rng(seed)
    h, f = config["hidden_size"], config["intermediate_size"]

    def w(*shape: int) -> np.ndarray[Any, Any]:
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    t = {"embeddings.word_embeddings.weight": w(config["vocab_size"], h),
         "embeddings.position_embeddings.weight": w(config["max_position_embeddings"], h),
         "embeddings.token_type_embeddings.weight": w(config["type_vocab_size"], h),
         "embeddings.LayerNorm.weight": np.ones(h, np.float32),
         "embeddings.LayerNorm.bias": np.zeros(h, np.float32),
         "pooler.dense.weight": w(h, h), "pooler.dense.bias": w(h)}
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name, shape in (("attention.self.query", (h, h)), ("attention.self.key", (h, h)),
                            ("attention.self.value", (h, h)),
                            ("attention.output.dense", (h, h)),
                            ("intermediate.dense", (f, h)), ("output.dense", (h, f))):
            t[p + name + ".weight"] = w(*shape)
            t[p + name + ".bias"] = w(shape[0])
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + norm + ".weight"] = np.ones(h, np.float32)
            t[p + norm + ".bias"] = np.zeros(h, np.float32)
    save_file({prefix + k: v for k, v in t.items()}, os.path.join(out, "model.safetensors"))
    tokenizer = {
        "version": "1.0",
        "added_tokens": [{"id": i, "content": tok, "special": True}
                         for i, tok in enumerate(BERT_WORDS[:5])],
        "normalizer": {"type": "BertNormalizer", "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100,
                  "vocab": {tok: i for i, tok in enumerate(BERT_WORDS)}},
    }
    for name, value in (("config.json", config), ("tokenizer.json", tokenizer),
                        ("tokenizer_config.json", {"cls_token": "[CLS]", "sep_token": "[SEP]",
                                                   "do_lower_case": True})):
        with open(os.path.join(out, name), "w") as fh:
            json.dump(value, fh)
    return {name: os.path.join(out, name) for name in os.listdir(out)}
