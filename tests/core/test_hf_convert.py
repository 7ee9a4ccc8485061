"""core/hf_convert.py: architectures, metadata from config.json, tensor names and transforms,
and every refusal a 400 naming what is wrong."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.adapters.hf_converter import names_for
from pollama.core import hf_convert as hf
from pollama.core.errors import BadRequest

SMOL: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 2, "num_attention_heads": 9,
    "num_key_value_heads": 3, "rms_norm_eps": 1e-5, "rope_theta": 100000,
    "max_position_embeddings": 8192, "vocab_size": 49152, "tie_word_embeddings": True,
}


LOOKUP = names_for(hf.architecture(SMOL), 2)


def hf_names(layers: int = 2, *, lm_head: bool = False) -> list[str]:
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    for i in range(layers):
        p = f"model.layers.{i}."
        names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight",
                  p + "self_attn.rotary_emb.inv_freq"]
        names += [f"{p}self_attn.{x}_proj.weight" for x in "qkvo"]
        names += [f"{p}mlp.{x}_proj.weight" for x in ("gate", "up", "down")]
    return names + (["lm_head.weight"] if lm_head else [])


def test_supported_and_unsupported_architectures() -> None:
    assert hf.architecture(SMOL).name == "llama"
    assert hf.architecture({"architectures": ["Qwen2ForCausalLM"]}).name == "qwen2"
    with pytest.raises(BadRequest, match="unsupported architecture 'GPTNeoXForCausalLM'"):
        hf.architecture({"architectures": ["GPTNeoXForCausalLM"]})
    with pytest.raises(BadRequest, match="no \"architectures\""):
        hf.architecture({})


def test_metadata_from_the_config() -> None:
    kv = {k.key: k.value for k in hf.metadata(hf.architecture(SMOL), SMOL)}
    assert kv["general.architecture"] == "llama"
    assert kv["llama.block_count"] == 2 and kv["llama.embedding_length"] == 576
    assert kv["llama.attention.head_count_kv"] == 3
    assert kv["llama.rope.dimension_count"] == 64  # hidden / heads
    assert kv["llama.rope.freq_base"] == 100000.0 and kv["llama.context_length"] == 8192


@pytest.mark.parametrize("change, match", [
    ({"hidden_size": None}, "missing 'hidden_size'"),
    ({"num_hidden_layers": 0}, "'num_hidden_layers' must be a positive integer"),
    ({"num_attention_heads": "9"}, "must be a positive integer"),
    ({"num_key_value_heads": 4}, "not a multiple"),
    ({"rope_theta": -1}, "'rope_theta' must be a positive number"),
])
def test_bad_configs(change: dict[str, Any], match: str) -> None:
    config = {k: v for k, v in {**SMOL, **change}.items() if v is not None}
    with pytest.raises(BadRequest, match=match):
        hf.metadata(hf.architecture(config), config)


def test_tensor_names_transforms_and_order() -> None:
    plans = hf.plan_tensors(hf.architecture(SMOL), SMOL, reversed(hf_names()), LOOKUP)
    by_source = {p.source: p for p in plans}
    assert by_source["model.embed_tokens.weight"].name == "token_embd.weight"
    assert by_source["model.layers.1.self_attn.q_proj.weight"] == hf.TensorPlan(
        source="model.layers.1.self_attn.q_proj.weight", name="blk.1.attn_q.weight",
        transform="permute_q")
    assert by_source["model.layers.0.self_attn.k_proj.weight"].transform == "permute_k"
    assert by_source["model.layers.0.self_attn.v_proj.weight"].transform == ""
    assert not any("inv_freq" in p.source for p in plans)  # dropped, as llama.cpp does
    assert plans[0].name == "token_embd.weight" and plans[-1].name == "output_norm.weight"
    blocks = [int(p.name.split(".")[1]) for p in plans if p.name.startswith("blk.")]
    assert blocks == sorted(blocks)


def test_qwen2_keeps_its_rows() -> None:
    config = {**SMOL, "architectures": ["Qwen2ForCausalLM"]}
    names = hf_names() + ["model.layers.0.self_attn.q_proj.bias"]
    plans = hf.plan_tensors(hf.architecture(config), config, names,
                            names_for(hf.architecture(config), 2))
    assert {p.transform for p in plans} == {""}
    assert "blk.0.attn_q.bias" in {p.name for p in plans}


def test_a_stray_tensor_is_named_with_its_file() -> None:
    names = hf_names() + ["model.layers.0.self_attn.lora_A.weight"]
    with pytest.raises(BadRequest, match="model-00002-of-00002.safetensors: tensor "
                       "'model.layers.0.self_attn.lora_A.weight' is not part of a "
                       "LlamaForCausalLM model"):
        hf.plan_tensors(hf.architecture(SMOL), SMOL, names, LOOKUP,
                        {"model.layers.0.self_attn.lora_A.weight":
                         "model-00002-of-00002.safetensors"})


def test_a_missing_tensor_is_named() -> None:
    names = [n for n in hf_names() if n != "model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(BadRequest, match="no tensor for 'blk.1.ffn_up.weight'"):
        hf.plan_tensors(hf.architecture(SMOL), SMOL, names, LOOKUP)


def test_expected_shapes() -> None:
    arch = hf.architecture(SMOL)
    assert hf.expected_shape(arch, SMOL, "token_embd.weight") == (49152, 576)
    assert hf.expected_shape(arch, SMOL, "blk.1.attn_k.weight") == (192, 576)
    assert hf.expected_shape(arch, SMOL, "blk.0.ffn_down.weight") == (576, 1536)
    assert hf.expected_shape(arch, SMOL, "blk.0.attn_q.bias") == (576,)
    assert hf.expected_shape(arch, SMOL, "rope_freqs.weight") is None


@given(heads=st.integers(1, 8), half=st.integers(1, 4), cols=st.integers(1, 3))
def test_unpermute_inverts_permute(heads: int, half: int, cols: int) -> None:
    w = np.arange(heads * half * 2 * cols, dtype=np.float32).reshape(heads * half * 2, cols)
    assert np.array_equal(hf.unpermute(hf.permute(w, heads), heads), w)
    assert np.array_equal(hf.permute(hf.unpermute(w, heads), heads), w)


def test_config_json_must_be_an_object() -> None:
    assert hf.parse_config(json.dumps(SMOL).encode()) == SMOL
    for raw in (b"[]", b"{", b"\xff"):
        with pytest.raises(BadRequest, match="config.json"):
            hf.parse_config(raw)


def _tokenizer(**over: Any) -> dict[str, Any]:
    from tests.hftiny import tiny_tokenizer
    return {**tiny_tokenizer(), **over}


def test_vocab_from_a_bpe_tokenizer() -> None:
    v = hf.vocab(json.dumps(_tokenizer()).encode(),
                 json.dumps({"bos_token": {"content": "<|im_start|>"}, "eos_token": "<|im_end|>",
                             "add_bos_token": False,
                             "chat_template": [{"name": "default", "template": "T"}]}).encode(),
                 {"vocab_size": 300})
    assert (v.model, v.pre, v.bos, v.eos, v.add_bos, v.chat_template) == (
        "gpt2", "gpt-2", 1, 2, False, "T")
    assert v.types[:4] == (hf.CONTROL, hf.CONTROL, hf.CONTROL, hf.NORMAL)
    assert len(v.tokens) == 300 and v.tokens[-1] == "[PAD299]" and v.types[-1] == hf.UNUSED
    assert v.merges[:2] == ("h e", "l l")


def test_merges_as_pairs_and_ids_from_the_config() -> None:
    tok = _tokenizer()
    tok["model"] = {**tok["model"], "merges": [["h", "e"]]}
    v = hf.vocab(json.dumps(tok).encode(), None, {"vocab_size": 272, "eos_token_id": 2})
    assert v.merges == ("h e",) and v.eos == 2 and v.bos is None and v.chat_template is None


@pytest.mark.parametrize("pre, name", [
    ({"type": "ByteLevel", "use_regex": True}, "gpt-2"),
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                            {"type": "ByteLevel", "use_regex": True}]},
     "smollm"),
    ({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": list(hf._SPLIT_PATTERNS)[0]}},
        {"type": "ByteLevel", "use_regex": False}]}, "llama-bpe"),
    ({"type": "Whitespace"}, "default"),
    (None, "default"),
])
def test_pre_tokenizer_names(pre: Any, name: str) -> None:
    assert hf.pre_tokenizer(pre) == name


@pytest.mark.parametrize("tok, match", [
    ({"model": {"type": "Unigram"}}, "unsupported tokenizer model 'Unigram'"),
    ({"model": {"type": "BPE", "vocab": {"a": -1}}}, "model.vocab"),
    ({"model": {"type": "BPE", "vocab": {"a": 999}}}, "beyond vocab_size"),
    ({"model": {"type": "BPE", "vocab": {}, "merges": [1]}}, "a merge"),
    ({"model": {"type": "BPE", "vocab": {}}, "added_tokens": [{"id": "x"}]}, "added token"),
])
def test_bad_tokenizers(tok: dict[str, Any], match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        hf.vocab(json.dumps(tok).encode(), None, {"vocab_size": 272})


def test_sentencepiece_pieces_become_a_llama_vocabulary() -> None:
    pieces = [hf.Piece(text="<unk>", score=0.0, kind=hf.UNKNOWN),
              hf.Piece(text="<s>", score=0.0, kind=hf.CONTROL),
              hf.Piece(text="</s>", score=0.0, kind=hf.CONTROL),
              hf.Piece(text="<0x00>", score=0.0, kind=hf.BYTE),
              hf.Piece(text="▁the", score=-1.5, kind=hf.NORMAL)]
    v = hf.sentencepiece_vocab(pieces, json.dumps({"bos_token": "<s>", "eos_token": {
        "content": "</s>"}}).encode(), {"vocab_size": 7})
    assert (v.model, v.pre, v.bos, v.eos, v.add_bos) == ("llama", "default", 1, 2, True)
    assert v.tokens[-2:] == ("[PAD5]", "[PAD6]") and v.types[-1] == hf.UNUSED
    assert v.scores[4] == -1.5 and v.scores[-1] == -1000.0 and v.merges == ()
    with pytest.raises(BadRequest, match="more than vocab_size"):
        hf.sentencepiece_vocab(pieces, None, {"vocab_size": 3})


def test_a_sentencepiece_tokenizer_json_is_recognised() -> None:
    assert hf.is_sentencepiece_json(json.dumps(
        {"model": {"type": "BPE", "byte_fallback": True}}).encode())
    assert not hf.is_sentencepiece_json(json.dumps(_tokenizer()).encode())
    assert not hf.is_sentencepiece_json(b"{")


def test_llama3_rope_factors_as_llama_cpp_computes_them() -> None:
    config = {**SMOL, "rope_theta": 500000.0, "hidden_size": 2048, "num_attention_heads": 32,
              "num_key_value_heads": 8,
              "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8192}}
    factors = hf.rope_factors(config)
    assert factors is not None and len(factors) == 32  # head_dim 64 / 2
    assert factors[0] == 1.0 and factors[-1] == 32.0  # short wavelengths kept, long scaled
    assert all(1.0 <= f <= 32.0 for f in factors) and factors == sorted(factors)
    assert hf.rope_factors(SMOL) is None


def test_linear_and_yarn_rope_scaling_keys() -> None:
    config = {**SMOL, "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                       "original_max_position_embeddings": 32768}}
    kv = {k.key: k.value for k in hf.metadata(hf.architecture(config), config)}
    assert kv["llama.rope.scaling.type"] == "yarn" and kv["llama.rope.scaling.factor"] == 4.0
    assert kv["llama.rope.scaling.original_context_length"] == 32768
    linear = {**SMOL, "rope_scaling": {"type": "linear", "factor": 8.0}}
    kv = {k.key: k.value for k in hf.metadata(hf.architecture(linear), linear)}
    assert kv["llama.rope.scaling.type"] == "linear"


def test_output_types_and_what_counts_as_a_directory() -> None:
    assert hf.out_dtype("blk.0.attn_q.weight", (64, 64), False) == "F16"
    assert hf.out_dtype("blk.0.attn_q.weight", (64, 64), True) == "BF16"
    assert hf.out_dtype("blk.0.attn_norm.weight", (64,), True) == "F32"
    assert hf.out_dtype("position_embd.weight", (512, 64), False) == "F32"
    assert hf.is_model_dir(["config.json", "model-00001-of-00002.safetensors"])
    assert not hf.is_model_dir(["config.json", "model.gguf"])
    assert hf.is_adapter_dir(["adapter_config.json", "adapter_model.safetensors"])
    assert not hf.is_adapter_dir(["adapter_model.safetensors"])
