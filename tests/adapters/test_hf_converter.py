"""adapters/hf_converter.py on tiny random models written by the test: the GGUF holds the
permuted weights and the vocabulary, llama.cpp loads and runs it, and bad input is a 400 that
leaves no file behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import gguf
import numpy as np
import pytest

from pollama.adapters import hf_converter
from pollama.core import hf_convert as hf
from pollama.core.errors import BadRequest, SafetensorsError
from tests.hftiny import tiny_config, tiny_weights, write_tiny


def _tensor(reader: gguf.GGUFReader, name: str) -> np.ndarray[Any, Any]:
    t = next(t for t in reader.tensors if t.name == name)
    return np.asarray(t.data)


def test_a_tiny_llama_converts_with_its_weights_and_vocabulary(tmp_path: Any) -> None:
    config = tiny_config()
    weights = tiny_weights(config)
    files = write_tiny(str(tmp_path / "hf"), config, weights)
    out = str(tmp_path / "model.gguf")
    seen: list[tuple[int, int]] = []
    hf_converter.convert(files, out, lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(seen), len(seen)) and len(seen) == 2 + 9 * 2
    reader = gguf.GGUFReader(out)
    q = _tensor(reader, "blk.1.attn_q.weight")
    assert q.dtype == np.float16
    np.testing.assert_allclose(
        q, hf.permute(weights["model.layers.1.self_attn.q_proj.weight"], 4), atol=1e-3)
    k = _tensor(reader, "blk.0.attn_k.weight")
    np.testing.assert_allclose(
        k, hf.permute(weights["model.layers.0.self_attn.k_proj.weight"], 2), atol=1e-3)
    assert _tensor(reader, "output_norm.weight").dtype == np.float32
    fields = reader.fields
    assert fields["general.architecture"].contents() == "llama"
    assert fields["tokenizer.ggml.pre"].contents() == "gpt-2"
    assert fields["tokenizer.ggml.bos_token_id"].contents() == 1
    assert fields["tokenizer.chat_template"].contents() == "{{ messages[0]['content'] }}"
    assert len(fields["tokenizer.ggml.tokens"].contents()) == 272
    assert not [f for f in os.listdir(tmp_path) if ".partial" in f]


def test_llama_cpp_loads_and_runs_the_conversion(tmp_path: Any) -> None:
    import llama_cpp

    files = write_tiny(str(tmp_path / "hf"))
    out = str(tmp_path / "model.gguf")
    hf_converter.convert(files, out)
    llm = llama_cpp.Llama(out, n_ctx=64, verbose=False, logits_all=False)
    tokens = llm.tokenize(b"<|im_start|>hello", add_bos=False, special=True)
    assert tokens[0] == 1 and tokens[1] == 3 + 256 + 3  # the special token, then "hello"
    llm.eval(tokens)
    logits = np.asarray(llm.scores[llm.n_tokens - 1])
    assert logits.shape == (272,) and np.isfinite(logits).all()


@pytest.mark.parametrize("arch, name, extra", [
    ("Qwen2ForCausalLM", "qwen2", "blk.1.attn_v.bias"),
    ("Qwen3ForCausalLM", "qwen3", "blk.1.attn_k_norm.weight"),
    ("Phi3ForCausalLM", "phi3", "blk.1.attn_qkv.weight"),
    ("Gemma2ForCausalLM", "gemma2", "blk.1.post_ffw_norm.weight"),
    ("Gemma3ForCausalLM", "gemma3", "blk.0.attn_q_norm.weight")])
def test_qwen_and_phi3_models_convert_and_run(tmp_path: Any, arch: str, name: str,
                                              extra: str) -> None:
    import llama_cpp

    gemma = {"head_dim": 16, "sliding_window": 32, "attn_logit_softcapping": 50.0,
             "final_logit_softcapping": 30.0} if name.startswith("gemma") else {}
    files = write_tiny(str(tmp_path / "hf"), tiny_config(arch, **gemma))
    out = str(tmp_path / "model.gguf")
    hf_converter.convert(files, out)
    reader = gguf.GGUFReader(out)
    assert extra in {t.name for t in reader.tensors}
    if gemma:  # zeros stored for Gemma's (1 + w) norms: ones in the GGUF
        assert np.all(_tensor(reader, "blk.0.attn_norm.weight") == 1.0)
    assert reader.fields["general.architecture"].contents() == name
    llm = llama_cpp.Llama(out, n_ctx=64, verbose=False)
    llm.eval(llm.tokenize(b"hello", add_bos=False))
    assert np.isfinite(np.asarray(llm.scores[llm.n_tokens - 1])).all()


def test_bf16_sources_stay_bf16(tmp_path: Any) -> None:
    config = tiny_config()
    weights = tiny_weights(config)
    files = write_tiny(str(tmp_path / "hf"), config, weights, bf16=True)
    out = str(tmp_path / "model.gguf")
    hf_converter.convert(files, out)
    reader = gguf.GGUFReader(out)
    t = next(t for t in reader.tensors if t.name == "blk.0.ffn_up.weight")
    assert t.tensor_type is gguf.GGMLQuantizationType.BF16
    raw = np.asarray(t.data).view(np.uint16).astype(np.uint32) << 16
    np.testing.assert_allclose(raw.view(np.float32).reshape(128, 64),
                               weights["model.layers.0.mlp.up_proj.weight"], rtol=1e-2,
                               atol=1e-3)


@pytest.mark.parametrize("break_it, error, match", [
    (lambda d: os.remove(d["config.json"]), BadRequest, "no config.json"),
    (lambda d: _edit_json(d["config.json"], architectures=["GPT2LMHeadModel"]), BadRequest,
     "unsupported architecture 'GPT2LMHeadModel'"),
    (lambda d: _edit_json(d["config.json"], intermediate_size=96), BadRequest,
     "model.safetensors: tensor 'model.layers.0.mlp.down_proj.weight' has shape \\[64, 128\\], "
     "the config says \\[64, 96\\]"),
    (lambda d: _truncate(d["model.safetensors"]), SafetensorsError, "model.safetensors: "),
])
def test_bad_input_is_a_400_and_leaves_nothing(tmp_path: Any, break_it: Any,
                                               error: type[Exception], match: str) -> None:
    files = write_tiny(str(tmp_path / "hf"))
    break_it(files)
    files = {n: p for n, p in files.items() if os.path.exists(p)}
    with pytest.raises(error, match=match):
        hf_converter.convert(files, str(tmp_path / "model.gguf"))
    assert os.listdir(tmp_path) == ["hf"]


def test_a_stray_tensor_is_named(tmp_path: Any) -> None:
    config = tiny_config()
    weights = tiny_weights(config) | {"model.layers.0.adapter.weight": np.zeros(2, np.float32)}
    files = write_tiny(str(tmp_path / "hf"), config, weights)
    with pytest.raises(BadRequest, match="model.safetensors: tensor "
                       "'model.layers.0.adapter.weight' is not part of a LlamaForCausalLM"):
        hf_converter.convert(files, str(tmp_path / "model.gguf"))


def test_the_subprocess_entry_prints_progress_and_errors(tmp_path: Any) -> None:
    files = write_tiny(str(tmp_path / "hf"))
    out = str(tmp_path / "model.gguf")
    argv = [sys.executable, "-m", "pollama.adapters.hf_converter", out,
            *[f"{n}={p}" for n, p in files.items()]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and lines[-1]["status"] == "converting model"
    assert lines[-1]["completed"] == lines[-1]["total"]
    os.remove(files["tokenizer.json"])
    failed = subprocess.run(argv[:4] + [a for a in argv[4:] if "tokenizer.json=" not in a],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    assert json.loads(failed.stdout) == {
        "error": "the model's files have no tokenizer.json or tokenizer.model", "status": 400}


def _edit_json(path: str, **changes: Any) -> None:
    with open(path) as f:
        data = json.load(f)
    data.update(changes)
    with open(path, "w") as f:
        json.dump(data, f)


def _truncate(path: str) -> None:
    with open(path, "rb+") as f:
        f.truncate(os.path.getsize(path) - 100)


def _logits(path: str, lora: str | None = None) -> np.ndarray[Any, Any]:
    import llama_cpp

    llm = llama_cpp.Llama(path, n_ctx=64, verbose=False, lora_path=lora, logits_all=True)
    tokens = llm.tokenize(b"hello world", add_bos=False)
    llm.eval(tokens)
    return np.array(llm.scores[:len(tokens)])


def test_a_lora_converts_loads_with_its_base_and_changes_the_logits(tmp_path: Any) -> None:
    from tests.hftiny import write_lora

    config = tiny_config()
    base = str(tmp_path / "base.gguf")
    hf_converter.convert(write_tiny(str(tmp_path / "hf"), config), base)
    base_kv = gguf_file_kv(base)
    plain = _logits(base)
    lora = str(tmp_path / "lora.gguf")
    hf_converter.convert_lora(write_lora(str(tmp_path / "lora"), config), base_kv, lora)
    reader = gguf.GGUFReader(lora)
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.lora.alpha"].contents() == 8.0
    assert {t.name for t in reader.tensors} >= {"blk.0.attn_q.weight.lora_a",
                                                "blk.1.attn_k.weight.lora_b"}
    assert np.abs(_logits(base, lora) - plain).max() > 1e-2  # it changes the logits
    zero = str(tmp_path / "zero.gguf")
    hf_converter.convert_lora(write_lora(str(tmp_path / "zero"), config, zero=True), base_kv,
                              zero)
    np.testing.assert_allclose(_logits(base, zero), plain, atol=1e-4)  # zero deltas: none


def test_a_lora_matches_merging_its_delta_into_the_weights(tmp_path: Any) -> None:
    """The converted LoRA on the base computes what a base with W + (alpha/r)·B·A merged in
    (on Hugging Face's side, before conversion) computes: the permutation of B's rows is
    right."""
    from safetensors.numpy import load_file

    from tests.hftiny import write_lora

    config = tiny_config()
    weights = tiny_weights(config)
    base = str(tmp_path / "base.gguf")
    hf_converter.convert(write_tiny(str(tmp_path / "hf"), config, weights), base)
    files = write_lora(str(tmp_path / "lora"), config, rank=4, alpha=8.0)
    lora = str(tmp_path / "lora.gguf")
    hf_converter.convert_lora(files, gguf_file_kv(base), lora)
    factors = load_file(files["adapter_model.safetensors"])
    merged = dict(weights)
    for i in range(config["num_hidden_layers"]):
        for m in ("q_proj", "k_proj", "v_proj"):
            p = f"model.layers.{i}.self_attn.{m}"
            a = factors[f"base_model.model.{p}.lora_A.weight"]
            b = factors[f"base_model.model.{p}.lora_B.weight"]
            merged[p + ".weight"] = weights[p + ".weight"] + (8.0 / 4) * b @ a
    merged_gguf = str(tmp_path / "merged.gguf")
    hf_converter.convert(write_tiny(str(tmp_path / "merged"), config, merged), merged_gguf)
    # The LoRA moves the logits by up to ~4 and B's rows left unpermuted miss by ~3.5; what is
    # left is F16 rounding of the merged weights (measured 0.037).
    np.testing.assert_allclose(_logits(base, lora), _logits(merged_gguf), atol=0.1)


def test_bad_loras_are_named(tmp_path: Any) -> None:
    from tests.hftiny import write_lora

    config = tiny_config()
    base = str(tmp_path / "base.gguf")
    hf_converter.convert(write_tiny(str(tmp_path / "hf"), config), base)
    kv = gguf_file_kv(base)
    files = write_lora(str(tmp_path / "lora"), config)
    _edit_json(files["adapter_config.json"], peft_type="IA3")
    with pytest.raises(BadRequest, match="unsupported adapter type 'IA3'"):
        hf_converter.convert_lora(files, kv, str(tmp_path / "x.gguf"))
    files = write_lora(str(tmp_path / "lora2"), config, modules=("o_proj",))
    with pytest.raises(BadRequest, match="LoRA adapters for 'bert' models"):
        hf_converter.convert_lora(files, {**kv, "general.architecture": "bert"},
                                  str(tmp_path / "x.gguf"))
    assert not [n for n in os.listdir(tmp_path) if n.startswith("x.gguf")]


def gguf_file_kv(path: str) -> dict[str, Any]:
    from pollama.adapters.gguf_file import read_header

    return dict(read_header(path, ()).kv)


@pytest.mark.parametrize("prefix", ["", "bert."])
def test_a_tiny_bert_converts_and_embeds(tmp_path: Any, prefix: str) -> None:
    import llama_cpp

    from tests.hftiny import tiny_bert_config, write_tiny_bert

    config = tiny_bert_config(architectures=["BertForMaskedLM" if prefix else "BertModel"])
    out = str(tmp_path / "bert.gguf")
    hf_converter.convert(write_tiny_bert(str(tmp_path / "hf"), config, prefix=prefix), out)
    reader = gguf.GGUFReader(out)
    assert reader.fields["general.architecture"].contents() == "bert"
    assert reader.fields["bert.pooling_type"].contents() == 1
    assert reader.fields["tokenizer.ggml.model"].contents() == "bert"
    assert not any(t.name.startswith("pooler") for t in reader.tensors)
    llm = llama_cpp.Llama(out, embedding=True, n_ctx=64, verbose=False)
    assert llm.tokenize(b"hello worlds") == [2, 5, 6, 7, 3]  # [CLS] hello world ##s [SEP]
    vectors = llm.embed(["hello world", "the cat sat on the mat."])
    assert len(vectors) == 2 and len(vectors[0]) == 32
    assert np.isfinite(np.asarray(vectors)).all()
    assert not np.allclose(vectors[0], vectors[1])


def _sentencepiece_model(folder: str) -> str:
    """Train a small SentencePiece BPE model on a few lines, configured as Llama 2's is (byte
    fallback, no normalization, whitespace kept): llama.cpp implements no normalizer."""
    import sentencepiece

    corpus = os.path.join(folder, "corpus.txt")
    with open(corpus, "w") as f:
        f.write("\n".join(["Hello world, this is a test.", "The cat sat on the mat.",
                           "Numbers 12345 and café!", "def f(x): return x * 2"] * 50))
    sentencepiece.SentencePieceTrainer.train(
        input=corpus, model_prefix=os.path.join(folder, "sp"), vocab_size=320,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1,
        eos_id=2, pad_id=-1, minloglevel=2, normalization_rule_name="identity",
        remove_extra_whitespaces=False)
    return os.path.join(folder, "sp.model")


def test_a_sentencepiece_vocabulary_tokenizes_as_sentencepiece(tmp_path: Any) -> None:
    import llama_cpp
    import sentencepiece

    model = _sentencepiece_model(str(tmp_path))
    config = tiny_config(vocab_size=328)  # padded past the 320 pieces, as real models are
    files = write_tiny(str(tmp_path / "hf"), config)
    os.remove(files.pop("tokenizer.json"))
    files["tokenizer.model"] = model
    _edit_json(files["tokenizer_config.json"], bos_token="<s>", eos_token="</s>")
    out = str(tmp_path / "model.gguf")
    hf_converter.convert(files, out)
    reader = gguf.GGUFReader(out)
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"
    assert len(reader.fields["tokenizer.ggml.scores"].contents()) == 328
    sp = sentencepiece.SentencePieceProcessor(model_file=model)
    llm = llama_cpp.Llama(out, vocab_only=True, verbose=False)
    for text in ("Hello world", "The cat sat on the mat.", "café 42 ünïcödé ✓",
                 "  two  spaces"):
        assert llm.tokenize(text.encode()) == [1, *sp.encode(text)], text


def test_a_sentencepiece_tokenizer_json_needs_its_model_file(tmp_path: Any) -> None:
    files = write_tiny(str(tmp_path / "hf"))
    _edit_json(files["tokenizer.json"], model={"type": "BPE", "byte_fallback": True,
                                                "vocab": {}, "merges": []})
    with pytest.raises(BadRequest, match="SentencePiece vocabulary: add its tokenizer.model"):
        hf_converter.convert(files, str(tmp_path / "model.gguf"))


def test_llama3_rope_scaling_becomes_the_rope_freqs_tensor(tmp_path: Any) -> None:
    import llama_cpp

    config = tiny_config(rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 64})
    out = str(tmp_path / "model.gguf")
    hf_converter.convert(write_tiny(str(tmp_path / "hf"), config), out)
    factors = _tensor(gguf.GGUFReader(out), "rope_freqs.weight")
    assert factors.shape == (8,) and factors.dtype == np.float32
    np.testing.assert_allclose(factors, hf.rope_factors(config), rtol=1e-6)
    llm = llama_cpp.Llama(out, n_ctx=64, verbose=False)
    llm.eval(llm.tokenize(b"hello", add_bos=False))
    assert np.isfinite(np.asarray(llm.scores[llm.n_tokens - 1])).all()
