"""The SmolLM2 round trip: its GGUF dequantized into a Hugging Face directory (tests/hfmodel.py),
converted back by pollama, tokenizes the same, computes nearly the same logits, and through a
real server is created from the directory with ``-q q4_K_M`` and generates."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from pollama.adapters import hf_converter
from tests.conftest import Server, running_server
from tests.hfmodel import write_hf_model

pytestmark = pytest.mark.e2e

CORPUS = [
    "Hello, world! How are you today?",
    "def f(x):\n    return x ** 2  # square\n",
    "Numbers: 3.14159, 2026-12-06, 1234567890 and ²½.",
    "Unicode: café, naïve, 日本語, Ελληνικά, русский, 👍🏽 🇫🇷",
    "  leading and trailing spaces  \t\r\n",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]


@pytest.fixture(scope="module")
def converted(smollm2_gguf: str) -> Iterator[tuple[str, str]]:
    """(the HF directory, its conversion) in a temp dir."""
    with tempfile.TemporaryDirectory(prefix="pollama-hf-rt-") as tmp:
        hf_dir = os.path.join(tmp, "smollm2-hf")
        write_hf_model(smollm2_gguf, hf_dir, dtype="F32")
        files = {n: os.path.join(hf_dir, n) for n in os.listdir(hf_dir)}
        out = os.path.join(tmp, "converted.gguf")
        hf_converter.convert(files, out)
        yield hf_dir, out


def test_the_conversion_tokenizes_as_the_original(smollm2_gguf: str,
                                                  converted: tuple[str, str]) -> None:
    import llama_cpp

    original = llama_cpp.Llama(smollm2_gguf, vocab_only=True, verbose=False)
    ours = llama_cpp.Llama(converted[1], vocab_only=True, verbose=False)
    for text in CORPUS:
        for special in (False, True):
            assert ours.tokenize(text.encode(), add_bos=True, special=special) == \
                original.tokenize(text.encode(), add_bos=True, special=special), text


def test_the_conversion_computes_nearly_the_same_logits(smollm2_gguf: str,
                                                        converted: tuple[str, str]) -> None:
    """The original is Q4_1/Q8_0 (llama.cpp quantizes activations for those products); the
    conversion is F16 of the same dequantized values. Stated tolerance: at every position a
    correlation of at least 0.99 and the original's top token in our top 3."""
    import llama_cpp

    prompt = CORPUS[-1].encode()
    rows = []
    for path in (smollm2_gguf, converted[1]):
        llm = llama_cpp.Llama(path, n_ctx=256, logits_all=True, verbose=False, seed=1)
        tokens = llm.tokenize(prompt, add_bos=False, special=True)
        llm.eval(tokens)
        rows.append(np.array(llm.scores[:len(tokens)], dtype=np.float64))
        del llm
    theirs, ours = rows
    for position in range(len(theirs)):
        assert np.corrcoef(theirs[position], ours[position])[0, 1] > 0.99, position
        assert int(np.argmax(theirs[position])) in np.argsort(ours[position])[-3:], position


@pytest.fixture(scope="module")
def srv() -> Iterator[Server]:
    with running_server("pollama-hf-rt-") as server:
        yield server


def test_create_from_the_directory_quantized_then_generate(srv: Server,
                                                           converted: tuple[str, str]) -> None:
    hf_dir = converted[0]
    modelfile = os.path.join(os.path.dirname(hf_dir), "Modelfile")
    with open(modelfile, "w") as f:
        f.write(f"FROM {hf_dir}\n")
    done = subprocess.run([sys.executable, "-m", "pollama.cli.main", "create", "smol-hf",
                           "-f", modelfile, "-q", "q4_K_M"], env=srv.env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "converting model" in done.stderr and "quantizing F16 model to Q4_K_M" in done.stderr
    show: dict[str, Any] = httpx.post(f"{srv.url}/api/show", json={"model": "smol-hf"},
                                      timeout=60).json()
    assert show["details"]["quantization_level"] == "Q4_K_M"
    assert "im_start" in show["template"]  # the chat template came from tokenizer_config.json
    r = httpx.post(f"{srv.url}/api/chat", timeout=300, json={
        "model": "smol-hf", "stream": False,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "options": {"temperature": 0, "num_predict": 24}})
    assert r.status_code == 200, r.text
    assert r.json()["message"]["content"].strip()
