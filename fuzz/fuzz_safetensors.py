"""Fuzz target: the safetensors header reader (pollama.core.safetensors).

Allowed outcomes for any bytes: a Header whose tensors tile the data exactly up to the end of
the input (``file_size`` is the input's length), or ``SafetensorsError``. Run directly for a
fuzzing session (atheris if installed, otherwise 10 s of mutated random input); the same
``one_input`` runs under Hypothesis in ``tests/core/test_fuzz_harnesses.py``.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _loop  # noqa: E402  (the shared driver next to this file)

from pollama.core import safetensors as stf  # noqa: E402
from pollama.core.errors import SafetensorsError  # noqa: E402


def _file(header: dict[str, object], data_size: int) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(data_size)


SEEDS = [
    _file({"__metadata__": {"format": "pt"},
           "model.embed_tokens.weight": {"dtype": "BF16", "shape": [4, 2],
                                         "data_offsets": [0, 16]},
           "lm_head.weight": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}}, 24),
    _file({"t": {"dtype": "F16", "shape": [], "data_offsets": [0, 2]}}, 2),
    _file({}, 0),
]


def one_input(data: bytes) -> None:
    try:
        header = stf.parse_header(data, file_size=len(data))
    except SafetensorsError as exc:
        assert exc.message
        return
    assert header.data_start + header.data_size == len(data)
    position = 0
    for t in header.tensors:
        assert t.begin == position and t.end - t.begin == math.prod(t.shape) * \
            stf.DTYPE_SIZES[t.dtype]
        position = t.end


# JSON's punctuation, the length prefix's bytes, and names of dtypes and fields.
_mutate = _loop.byte_mutator(b'{}[],":0129\x00\xff', (b'"F32"', b'"BF16"', b'"shape"',
                                                       b'"data_offsets"', b"-1", b"1e30"),
                             max_edits=6, splice=SEEDS)

HARNESS = _loop.Harness(one_input, _mutate, SEEDS)
random_loop = HARNESS.random_loop

if __name__ == "__main__":
    HARNESS.main()
