"""Fuzz target: the GGUF header parser (pollama.core.gguf).

Allowed outcomes for any bytes: a Header, ``Truncated`` (prefix mode) or ``GGUFError``.
"""

from __future__ import annotations

import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _loop  # noqa: E402  (the shared driver next to this file)

from pollama.core import gguf  # noqa: E402


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _seed() -> bytes:
    kv = [
        _s("general.architecture") + struct.pack("<I", 8) + _s("llama"),
        _s("llama.block_count") + struct.pack("<I", 4) + struct.pack("<I", 2),
        _s("tokenizer.ggml.tokens") + struct.pack("<II", 9, 8) + struct.pack("<Q", 2)
        + _s("a") + _s("b"),
        _s("x.f") + struct.pack("<I", 9) + struct.pack("<IQ", 6, 2) + struct.pack("<ff", 1, 2),
    ]
    tensors = [_s("w") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 4)
               + struct.pack("<IQ", 0, 0)]
    return (b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv)
            + b"".join(tensors))


SEEDS = [_seed()]


def one_input(data: bytes) -> None:
    for complete in (False, True):
        try:
            h = gguf.parse_header(data, complete=complete, keep_arrays=("tokenizer.ggml.tokens",))
        except gguf.Truncated as more:
            assert not complete and more.need > len(data)
        except gguf.GGUFError:
            pass
        else:
            assert h.header_size <= len(data)
            assert isinstance(h.kv["general.architecture"], str)
            assert h.parameter_count >= 0


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(len(buf))
        if rng.random() < 0.5:
            buf[pos] = rng.randrange(256)
        else:
            del buf[pos:pos + rng.randint(1, 8)]
        if not buf:
            break
    return bytes(buf)


HARNESS = _loop.Harness(one_input, _mutate, SEEDS)
random_loop = HARNESS.random_loop

if __name__ == "__main__":
    HARNESS.main()
