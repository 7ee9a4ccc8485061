"""core.gguf against files written by the reference ``gguf`` package (tiny, random weights)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz import fuzz_gguf
from pollama.core import gguf

gguf_pkg = pytest.importorskip("gguf")


def tiny_gguf(path: Path, *, arch: str = "llama", tokens: int = 8) -> bytes:
    w = gguf_pkg.GGUFWriter(str(path), arch)
    w.add_block_count(2)
    w.add_context_length(128)
    w.add_embedding_length(16)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_file_type(1)
    w.add_string("tokenizer.chat_template", "{{ messages }}")
    w.add_token_list([f"t{i}" for i in range(tokens)])
    w.add_token_scores([0.5] * tokens)
    w.add_array("test.ints", [1, 2, 3])
    w.add_bool("test.flag", True)
    w.add_float32("test.f", 1.5)
    w.add_tensor("tok_embd.weight", np.zeros((tokens, 16), dtype=np.float16))
    w.add_tensor("blk.0.attn_q.weight", np.ones((16, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def test_parses_what_gguf_writes(tmp_path: Path) -> None:
    data = tiny_gguf(tmp_path / "m.gguf")
    h = gguf.parse_header(data, complete=True, keep_arrays=("tokenizer.ggml.tokens",))
    assert h.version == 3
    assert h.kv["general.architecture"] == "llama"
    assert h.kv["llama.block_count"] == 2 and h.kv["llama.attention.head_count_kv"] == 2
    assert h.kv["tokenizer.ggml.tokens"] == [f"t{i}" for i in range(8)]
    assert h.kv["tokenizer.ggml.scores"] == gguf.ArrayInfo(type=6, count=8)
    assert h.kv["test.flag"] is True and h.kv["test.f"] == 1.5
    assert h.array_len("test.ints") == 3
    assert [t.name for t in h.tensors] == ["tok_embd.weight", "blk.0.attn_q.weight"]
    assert h.tensors[0].dims == (16, 8)  # GGUF stores dims fastest-varying first
    assert h.parameter_count == 8 * 16 + 16 * 16


def test_prefixes_ask_for_more_and_whole_file_never_does(tmp_path: Path) -> None:
    data = tiny_gguf(tmp_path / "m.gguf")
    full = gguf.parse_header(data, complete=True)
    for n in range(0, full.header_size, 7):
        with pytest.raises((gguf.Truncated, gguf.GGUFError)) as err:
            gguf.parse_header(data[:n])
        if isinstance(err.value, gguf.Truncated):
            assert err.value.need > n
        with pytest.raises(gguf.GGUFError):
            gguf.parse_header(data[:n], complete=True)
    assert gguf.parse_header(data[:full.header_size]) == full


@pytest.mark.parametrize(("data", "message"), [
    (b"", "truncated"), (b"GGML" + b"\0" * 20, "invalid file magic"),
    (b"GGUF\x01\0\0\0" + b"\0" * 16, "unsupported GGUF version 1"),
    (b"GGUF\x03\0\0\0" + b"\0" * 8 + b"\0" * 8, "no general.architecture"),
    (b"GGUF\x03\0\0\0" + b"\xff" * 16, "implausible"),
])
def test_invalid(data: bytes, message: str) -> None:
    with pytest.raises(gguf.GGUFError, match=message):
        gguf.parse_header(data, complete=True)


# The fuzz/fuzz_gguf.py harness runs in tests/core/test_fuzz_harnesses.py (any bytes, bytes
# inserted into its seed); here bytes of the seed are overwritten.


@settings(max_examples=200)
@given(st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_fuzz_mutated_real_header(pos: int, insert: bytes) -> None:
    seed = fuzz_gguf.SEEDS[0]
    fuzz_gguf.one_input(seed[:pos] + insert + seed[pos + len(insert):])
