"""core/safetensors.py: headers as the safetensors crate writes them parse; every broken rule is
a SafetensorsError naming the file and the tensor; any bytes give a Header or that error."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from safetensors import numpy as safetensors_numpy

from pollama.core import safetensors as stf
from pollama.core.errors import BadRequest, SafetensorsError


def encode(header: dict[str, Any], data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def two_tensors() -> bytes:
    return encode({"__metadata__": {"format": "pt"},
                   "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                   "a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, bytes(12))


def test_a_header_parses_in_data_order() -> None:
    data = two_tensors()
    h = stf.parse_header(data, file_size=len(data), name="model.safetensors")
    assert [t.name for t in h.tensors] == ["a", "b"]
    assert h.tensor("b") == stf.TensorInfo(name="b", dtype="F32", shape=(2,), begin=4, end=12)
    assert h.metadata == {"format": "pt"}
    assert h.data_start + h.data_size == len(data)
    assert h.tensor("nope") is None


def test_the_safetensors_package_writes_what_we_read() -> None:
    tensors = {"w": np.arange(6, dtype=np.float16).reshape(2, 3),
               "b": np.zeros(3, dtype=np.float32), "s": np.zeros((), dtype=np.int64)}
    data = safetensors_numpy.save(tensors, metadata={"k": "v"})
    h = stf.parse_header(data, file_size=len(data))
    assert {t.name: (t.dtype, t.shape) for t in h.tensors} == {
        "w": ("F16", (2, 3)), "b": ("F32", (3,)), "s": ("I64", ())}
    w = h.tensor("w")
    assert w is not None
    raw = data[h.data_start + w.begin:h.data_start + w.end]
    assert np.array_equal(np.frombuffer(raw, dtype=np.float16).reshape(2, 3), tensors["w"])


@pytest.mark.parametrize("header, match", [
    ({"t": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}}, "tensor 't': unknown dtype"),
    ({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, "tensor 't': shape"),
    ({"t": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}, "tensor 't': shape"),
    ({"t": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, "tensor 't': shape"),
    ({"t": {"dtype": "F32", "shape": [1] * 17, "data_offsets": [0, 4]}}, "tensor 't': shape"),
    ({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, "takes 8 bytes"),
    ({"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, "data_offsets 4 > 0"),
    ({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, "data_offsets must"),
    ({"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, "leaves a gap"),
    ({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "u": {"dtype": "F16", "shape": [1], "data_offsets": [2, 4]}}, "overlaps"),
    ({"t": [1, 2]}, "tensor 't': must be an object"),
    ({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, "unknown field"),
    ({"__metadata__": {"a": 1}}, "__metadata__"),
    ([], "not a JSON object"),
])
def test_broken_rules_name_the_file_and_tensor(header: Any, match: str) -> None:
    with pytest.raises(SafetensorsError, match=match) as err:
        stf.parse_header(encode(header, bytes(64)), name="model-00001.safetensors")
    assert str(err.value).startswith("model-00001.safetensors: ")
    assert isinstance(err.value, BadRequest)  # a 400


@pytest.mark.parametrize("data, match", [
    (b"\x01\x00", "too short"),
    (struct.pack("<Q", 10**9), "larger than"),
    (struct.pack("<Q", 1) + b"{", "too short"),
    (struct.pack("<Q", 50) + b"{}", "truncated"),
    (struct.pack("<Q", 2) + b"\xff\xfe", "not UTF-8"),
    (struct.pack("<Q", 3) + b"{x}", "not valid JSON"),
    (encode({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})[:20], "truncated"),
])
def test_bad_bytes(data: bytes, match: str) -> None:
    with pytest.raises(SafetensorsError, match=match):
        stf.parse_header(data)


def test_duplicates_and_non_finite_numbers_are_refused() -> None:
    raw = b'{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "t": {}}'
    with pytest.raises(SafetensorsError, match="duplicate key 't'"):
        stf.parse_header(struct.pack("<Q", len(raw)) + raw)
    raw = b'{"t": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}'
    with pytest.raises(SafetensorsError, match="NaN is not a number"):
        stf.parse_header(struct.pack("<Q", len(raw)) + raw)


def test_the_file_must_end_where_the_data_does() -> None:
    data = two_tensors()
    with pytest.raises(SafetensorsError, match="truncated"):
        stf.parse_header(data, file_size=len(data) - 1)
    with pytest.raises(SafetensorsError, match="should end at byte"):
        stf.parse_header(data, file_size=len(data) + 1)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_header_or_our_error(data: bytes) -> None:
    try:
        h = stf.parse_header(data, file_size=len(data))
    except SafetensorsError:
        return
    assert h.data_start + h.data_size == len(data)
