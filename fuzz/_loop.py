"""Shared driver for the fuzz harnesses: atheris when installed, else a mutation loop."""

from __future__ import annotations

import importlib
import random
import sys
import time
from collections.abc import Callable, Sequence

OneInput = Callable[[bytes], None]
Mutate = Callable[[random.Random, bytes], bytes]


def byte_mutator(alphabet: bytes) -> Mutate:
    """A mutation of 1-4 edits: delete a byte, insert a random one, or overwrite one with a
    byte of ``alphabet`` (the format's own punctuation)."""

    def mutate(rng: random.Random, data: bytes) -> bytes:
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(3)
            pos = rng.randint(0, len(buf))
            if op == 0 and buf:
                del buf[min(pos, len(buf) - 1)]
            elif op == 1:
                buf[pos:pos] = bytes([rng.randrange(256)])
            elif buf:
                buf[min(pos, len(buf) - 1)] = rng.choice(alphabet)
        return bytes(buf)

    return mutate


def random_loop(one_input: OneInput, mutate: Mutate, seeds: Sequence[bytes], *,
                seconds: float = 10.0, seed: int | None = None, random_share: float = 0.2,
                max_random: int = 128) -> int:
    """Feed random and mutated-seed inputs for ``seconds``; return how many ran."""
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        if rng.random() < random_share:
            data = rng.randbytes(rng.randint(0, max_random))
        else:
            data = mutate(rng, rng.choice(seeds))
        one_input(data)
        runs += 1
    return runs


def main(one_input: OneInput, loop: Callable[[], int]) -> None:
    try:
        atheris = importlib.import_module("atheris")
    except ImportError:
        print(f"atheris not installed; {loop()} random inputs OK")
        return
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
