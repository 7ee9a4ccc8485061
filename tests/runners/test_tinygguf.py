"""tests/tinygguf.py writes a GGUF that llama.cpp (through llama-cpp-python) loads and runs."""

from __future__ import annotations

import hashlib
import os

import pytest

from pollama.adapters import gguf_file
from tests import tinygguf


@pytest.mark.parametrize("ftype, name", [(tinygguf.FTYPE_F16, "F16"), (tinygguf.FTYPE_F32, "F32")])
def test_llama_cpp_loads_and_generates(tmp_path: object, ftype: int, name: str) -> None:
    import llama_cpp

    path = tinygguf.write(os.path.join(str(tmp_path), "tiny.gguf"), ftype=ftype)
    facts = gguf_file.read_facts(path)
    assert (facts.architecture, facts.file_type, facts.block_count) == ("llama", name, 2)
    assert (facts.embedding_length, facts.context_length, facts.head_count_kv) == (256, 128, 2)
    llm = llama_cpp.Llama(path, n_ctx=128, n_threads=1, verbose=False, seed=1)
    try:
        assert llm.n_vocab() == len(tinygguf.vocab()[0])
        out = llm("the sky is", max_tokens=5, temperature=0.0)
        assert out["usage"]["completion_tokens"] >= 1
    finally:
        llm.close()


def test_same_arguments_same_bytes(tmp_path: object) -> None:
    a = tinygguf.write(os.path.join(str(tmp_path), "a.gguf"))
    b = tinygguf.cached(os.path.join(str(tmp_path), "cache"))
    assert tinygguf.cached(os.path.join(str(tmp_path), "cache")) == b
    digest = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (a, b)]
    assert digest[0] == digest[1]
    assert not [f for f in os.listdir(str(tmp_path)) if f.startswith(".tiny-")]
