"""tests/hfmodel.py: the Hugging Face directory it rebuilds from the SmolLM2 GGUF is that model:
q/k rows un-permuted (checked by a numpy forward pass against llama.cpp's logits), shapes as
config.json says, safetensors the crate and our reader accept (F32; BF16 in 3 shards; F16), and
a tokenizer.json that tokenizes like llama.cpp.

Two whole-model writes (F32, BF16 sharded), each a few seconds of dequantization; F16 is the
same writer on the F32 weights."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import gguf
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from pollama.core import safetensors as stf
from tests.hfmodel import (gguf_reader, permute, to_bf16, unpermute, write_hf_model,
                           write_safetensors, write_tokenizer)

tokenizers = pytest.importorskip("tokenizers")
llama_cpp = pytest.importorskip("llama_cpp")

Weights = dict[str, np.ndarray[Any, Any]]


@pytest.fixture(scope="module")
def dirs(smollm2_gguf: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The two writes (F32, BF16 in 3 shards), made once for the module."""
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for key, dtype, shards in (("f32", "F32", 1), ("bf16", "BF16", 3)):
        out[key] = str(root / key)
        write_hf_model(smollm2_gguf, out[key], dtype=dtype, shards=shards)
    return out


@pytest.fixture(scope="module")
def f32(dirs: dict[str, str]) -> Weights:
    return load_file(os.path.join(dirs["f32"], "model.safetensors"))


def config(d: str) -> dict[str, Any]:
    with open(os.path.join(d, "config.json")) as f:
        cfg: dict[str, Any] = json.load(f)
    return cfg


def expected_shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    h, ff, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (cfg["vocab_size"], h), "model.norm.weight": (h,)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
                   p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q),
                   p + "mlp.gate_proj.weight": (ff, h), p + "mlp.up_proj.weight": (ff, h),
                   p + "mlp.down_proj.weight": (h, ff), p + "input_layernorm.weight": (h,),
                   p + "post_attention_layernorm.weight": (h,)}
    return shapes


# 1. the permutation

@pytest.mark.parametrize("rows, cols, n_head", [(576, 8, 9), (192, 5, 3), (8, 1, 2), (4, 3, 1)])
def test_unpermute_inverts_llama_cpps_permute(rows: int, cols: int, n_head: int) -> None:
    x = np.arange(rows * cols, dtype=np.float32).reshape(rows, cols)
    assert np.array_equal(permute(unpermute(x, n_head), n_head), x)
    assert np.array_equal(unpermute(permute(x, n_head), n_head), x)
    assert not np.array_equal(permute(x, n_head), x)
    # within each head, HF's rotary halves (i, i + d/2) become ggml's neighbours (2i, 2i + 1)
    hd = rows // n_head
    g = permute(x, n_head)
    assert np.array_equal(g[1], x[hd // 2]) and np.array_equal(g[2], x[1])
    v = np.arange(rows, dtype=np.float32)  # a bias, one dimension
    assert np.array_equal(permute(unpermute(v, n_head), n_head), v)


def test_bf16_rounds_to_nearest_even() -> None:
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -2.5, 0.0, np.inf, np.nan,
                  3.4e38], dtype=np.float32)
    assert to_bf16(x).tolist() == [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC020, 0, 0x7F80, 0x7FC0,
                                   0x7F80]


# 2. safetensors, shapes, config

def test_config_is_smollm2s(dirs: dict[str, str]) -> None:
    cfg = config(dirs["f32"])
    assert {k: cfg[k] for k in ("architectures", "model_type", "hidden_size",
                                "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta",
                                "max_position_embeddings", "vocab_size", "tie_word_embeddings",
                                "bos_token_id", "eos_token_id", "hidden_act", "torch_dtype")} == {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
        "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
        "num_key_value_heads": 3, "head_dim": 64, "rms_norm_eps": 1e-05, "rope_theta": 100000,
        "max_position_embeddings": 8192, "vocab_size": 49152, "tie_word_embeddings": True,
        "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "torch_dtype": "float32"}
    assert config(dirs["bf16"]) == cfg | {"torch_dtype": "bfloat16"}


def test_f32_weights_have_the_configs_shapes(dirs: dict[str, str], f32: Weights) -> None:
    assert {k: v.shape for k, v in f32.items()} == expected_shapes(config(dirs["f32"]))
    assert all(v.dtype == np.float32 for v in f32.values())
    path = os.path.join(dirs["f32"], "model.safetensors")
    with open(path, "rb") as f:
        h = stf.parse_header(f.read(1 << 20), file_size=os.path.getsize(path))
    assert (h.data_start - 8) % 8 == 0 and h.metadata == {"format": "pt"}


def test_f16_loads_as_the_f32_rounded(f32: Weights, tmp_path: Any) -> None:
    path = str(tmp_path / "model.safetensors")
    names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
             "model.layers.29.mlp.down_proj.weight", "model.norm.weight"]
    size = write_safetensors(path, {k: f32[k] for k in names}, "F16")
    loaded = load_file(path)
    assert set(loaded) == set(names)
    assert size == sum(v.nbytes for v in loaded.values())
    for k in names:
        assert loaded[k].dtype == np.float16
        assert np.array_equal(loaded[k], f32[k].astype(np.float16)), k


def test_sharded_bf16_has_a_consistent_index(dirs: dict[str, str], f32: Weights) -> None:
    d = dirs["bf16"]
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        index = json.load(f)
    files = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert sorted(os.listdir(d)) == sorted(
        files + ["config.json", "generation_config.json", "model.safetensors.index.json",
                 "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"])
    assert set(index["weight_map"]) == set(f32)
    assert set(index["weight_map"].values()) == set(files)
    total = 0
    sizes = []
    for name in files:
        path = os.path.join(d, name)
        with safe_open(path, framework="np") as f:  # the crate validates the header
            assert set(f.keys()) == {k for k, v in index["weight_map"].items() if v == name}
        with open(path, "rb") as f:
            data = f.read()
        h = stf.parse_header(data, file_size=len(data), name=name)
        assert {t.dtype for t in h.tensors} == {"BF16"}
        sizes.append(h.data_size)
        total += h.data_size
        for t in h.tensors:
            assert t.shape == f32[t.name].shape
            raw = np.frombuffer(data, np.uint16, t.numel, h.data_start + t.begin)
            assert np.array_equal(raw.reshape(t.shape), to_bf16(f32[t.name])), t.name
    assert index["metadata"]["total_size"] == total == sum(v.nbytes for v in f32.values()) // 2
    assert max(sizes) < 0.5 * total  # balanced, roughly
    back = (to_bf16(f32["model.embed_tokens.weight"]).astype(np.uint32) << 16).view(np.float32)
    assert np.allclose(back, f32["model.embed_tokens.weight"], rtol=2**-8, atol=0)


# 3. the tokenizer

CORPUS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "   three leading spaces and trailing   ",
    "tabs\tand\nnewlines\n\n\nand\r\nCRLF",
    "def f(x):\n    return x ** 2  # square\n",
    'if (a != b) { printf("%d\\n", a); }',
    "1234567890 3.14159 1,000,000 -42 ²½",
    "don't I'll we've they're it's",
    "naïve café Ünïcödé façade",
    "日本語のテキスト 中文 한국어 Ελληνικά русский",
    "emoji 😀👍🏽 🇫🇷 👨‍👩‍👧",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><repo_name>x<file_sep>y<jupyter_code>",
    "not a <|im_start special token",
    "",
]


@pytest.fixture(scope="module")
def vocab_llama(smollm2_gguf: str) -> Any:
    return llama_cpp.Llama(model_path=smollm2_gguf, vocab_only=True, verbose=False)


def test_the_tokenizer_tokenizes_like_llama_cpp(dirs: dict[str, str], vocab_llama: Any) -> None:
    tok = tokenizers.Tokenizer.from_file(os.path.join(dirs["f32"], "tokenizer.json"))
    assert tok.get_vocab_size() == 49152
    for text in CORPUS:
        want = vocab_llama.tokenize(text.encode(), add_bos=False, special=True)
        got = tok.encode(text, add_special_tokens=False).ids
        assert got == want, text
        assert tok.decode(got, skip_special_tokens=False) == text
    assert tok.encode("<|im_start|>").ids == [1]  # no BOS added (add_bos_token false)


def test_merges_as_pairs_tokenize_the_same(smollm2_gguf: str, dirs: dict[str, str],
                                           tmp_path: Any) -> None:
    write_tokenizer(smollm2_gguf, str(tmp_path), merges_as_pairs=True)
    with open(tmp_path / "tokenizer.json") as f:
        assert json.load(f)["model"]["merges"][0] == ["Ġ", "t"]
    pairs = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    strings = tokenizers.Tokenizer.from_file(os.path.join(dirs["f32"], "tokenizer.json"))
    for text in CORPUS:
        assert pairs.encode(text).ids == strings.encode(text).ids


def test_tokenizer_config(smollm2_gguf: str, dirs: dict[str, str]) -> None:
    with open(os.path.join(dirs["f32"], "tokenizer_config.json")) as f:
        cfg = json.load(f)
    template = gguf_reader(smollm2_gguf).fields["tokenizer.chat_template"].contents()
    assert cfg["chat_template"] == template and "<|im_start|>" in template
    assert (cfg["bos_token"], cfg["eos_token"], cfg["unk_token"], cfg["pad_token"]) == (
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_end|>")
    assert cfg["add_bos_token"] is False and "add_eos_token" not in cfg
    assert cfg["model_max_length"] == 8192
    assert len(cfg["added_tokens_decoder"]) == 17
    assert all(a["special"] for a in cfg["added_tokens_decoder"].values())


# 4. the weights are the GGUF's

def test_tied_embedding_rows_are_the_ggufs(smollm2_gguf: str, f32: Weights) -> None:
    r = gguf_reader(smollm2_gguf)
    t = next(t for t in r.tensors if t.name == "token_embd.weight")
    for token in (0, 1, 2, 1000, 49151):
        row = gguf.quants.dequantize(t.data[token:token + 1], t.tensor_type)[0]
        assert np.array_equal(f32["model.embed_tokens.weight"][token], row)
    assert "lm_head.weight" not in f32
    q = next(t for t in r.tensors if t.name == "blk.3.attn_q.weight")
    k = next(t for t in r.tensors if t.name == "blk.3.attn_k.weight")
    assert np.array_equal(permute(f32["model.layers.3.self_attn.q_proj.weight"], 9),
                          gguf.quants.dequantize(q.data, q.tensor_type))
    assert np.array_equal(permute(f32["model.layers.3.self_attn.k_proj.weight"], 3),
                          gguf.quants.dequantize(k.data, k.tensor_type))


def forward(w: Weights, cfg: dict[str, Any], ids: list[int]) -> np.ndarray[Any, Any]:
    """Hugging Face's LlamaForCausalLM in numpy, float32 (rotate_half RoPE): the logits at
    every position."""
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    n = len(ids)
    ang = np.arange(n)[:, None] / cfg["rope_theta"] ** (np.arange(0, hd, 2) / hd)
    cos = np.cos(np.tile(ang, 2))[:, None].astype(np.float32)
    sin = np.sin(np.tile(ang, 2))[:, None].astype(np.float32)

    def rope(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return x * cos + np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1) * sin

    def norm(x: np.ndarray[Any, Any], g: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg["rms_norm_eps"]) * g

    mask = np.triu(np.full((n, n), -np.inf, np.float32), 1)
    x = w["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, w[p + "input_layernorm.weight"])
        q = rope((h @ w[p + "self_attn.q_proj.weight"].T).reshape(n, nh, hd))
        k = rope((h @ w[p + "self_attn.k_proj.weight"].T).reshape(n, nkv, hd))
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(n, nkv, hd)
        k, v = np.repeat(k, nh // nkv, 1), np.repeat(v, nh // nkv, 1)
        s = np.einsum("tnd,snd->nts", q, k) / math.sqrt(hd) + mask
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        x = x + np.einsum("nts,snd->tnd", a, v).reshape(n, nh * hd) @ \
            w[p + "self_attn.o_proj.weight"].T
        h = norm(x, w[p + "post_attention_layernorm.weight"])
        g = h @ w[p + "mlp.gate_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * (h @ w[p + "mlp.up_proj.weight"].T)) @ \
            w[p + "mlp.down_proj.weight"].T
    logits: np.ndarray[Any, Any] = norm(x, w["model.norm.weight"]) @ \
        w["model.embed_tokens.weight"].T
    return logits


def test_hf_forward_pass_gives_llama_cpps_logits(smollm2_gguf: str, dirs: dict[str, str],
                                                 f32: Weights) -> None:
    cfg = config(dirs["f32"])
    tok = tokenizers.Tokenizer.from_file(os.path.join(dirs["f32"], "tokenizer.json"))
    ids = tok.encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                     "<|im_start|>assistant\n").ids
    llm = llama_cpp.Llama(model_path=smollm2_gguf, n_ctx=64, n_threads=2, logits_all=True,
                          verbose=False)
    llm.eval(ids)
    want = np.array(llm.scores[:len(ids)], dtype=np.float32)
    got = forward(f32, cfg, ids)
    # llama.cpp multiplies Q4_1 weights by Q8-quantized activations: close, not equal (the
    # argmax can flip on a near tie), so: correlated at every position, llama.cpp's pick in our
    # top 3, and the gap small next to logits of 10 to 40
    corr = [np.corrcoef(g, w)[0, 1] for g, w in zip(got, want)]
    assert min(corr) > 0.995, corr
    top3 = np.argsort(-got, -1)[:, :3]
    assert all(w in t for w, t in zip(want.argmax(-1), top3))
    assert np.abs(got - want).max() < 2.5
    # without the inverse permutation (the GGUF's row order) the logits are far off
    wrong = dict(f32)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}.self_attn."
        wrong[p + "q_proj.weight"] = permute(f32[p + "q_proj.weight"], 9)
        wrong[p + "k_proj.weight"] = permute(f32[p + "k_proj.weight"], 3)
    bad = forward(wrong, cfg, ids)
    assert min(np.corrcoef(g, w)[0, 1] for g, w in zip(bad, want)) < 0.9
    assert np.abs(bad - want).max() > 10
