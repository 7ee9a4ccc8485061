"""Shared driver for the fuzz harnesses: atheris when installed, else a mutation loop.

A harness module defines ``one_input(data)``, its ``SEEDS`` and a mutation, then::

    HARNESS = _loop.Harness(one_input, mutate, SEEDS)
    random_loop = HARNESS.random_loop  # what tests/core/test_fuzz_harnesses.py runs briefly

    if __name__ == "__main__":
        HARNESS.main()

``python fuzz/fuzz_<name>.py [seconds]`` then fuzzes under atheris if it is installed (which
reads its own flags from the command line), else feeds random and mutated-seed inputs for
``seconds`` (default 10).
"""

from __future__ import annotations

import importlib
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

OneInput = Callable[[bytes], None]
Mutate = Callable[[random.Random, bytes], bytes]


def byte_mutator(alphabet: bytes, tokens: Sequence[bytes] = (), *, max_edits: int = 4,
                 repeat: bool = False, splice: Sequence[bytes] = ()) -> Mutate:
    """A mutation of 1 to ``max_edits`` edits: delete a byte, insert a random one, overwrite
    one with a byte of ``alphabet`` (the format's own punctuation); with ``tokens``, also insert
    one of them whole; with ``repeat``, also repeat a span of up to 16 bytes 2 to 50 times; with
    ``splice`` (the seeds, say), also insert a piece of up to 40 bytes of one of them."""
    n_ops = 3 + bool(tokens) + repeat + bool(splice)

    def mutate(rng: random.Random, data: bytes) -> bytes:
        buf = bytearray(data)
        for _ in range(rng.randint(1, max_edits)):
            op = rng.randrange(n_ops)
            pos = rng.randint(0, len(buf))
            if op == 1:
                buf[pos:pos] = bytes([rng.randrange(256)])
            elif op == 3 and tokens:
                buf[pos:pos] = rng.choice(tokens)
            elif splice and op == n_ops - 1:
                other = rng.choice(splice)
                start = rng.randint(0, len(other))
                buf[pos:pos] = other[start:start + rng.randint(1, 40)]
            elif not buf:
                continue
            elif op == 0:
                del buf[min(pos, len(buf) - 1)]
            elif op == 2:
                buf[min(pos, len(buf) - 1)] = rng.choice(alphabet)
            else:
                end = min(len(buf), pos + rng.randint(1, 16))
                buf[pos:end] = buf[pos:end] * rng.randint(2, 50)
        return bytes(buf)

    return mutate


def random_loop(one_input: OneInput, mutate: Mutate, seeds: Sequence[bytes], *,
                seconds: float = 10.0, seed: int | None = None, random_share: float = 0.2,
                max_random: int = 128, keep_share: float = 0.0, max_corpus: int = 1000) -> int:
    """Feed random and mutated-seed inputs for ``seconds``; return how many ran. With
    ``keep_share``, that share of the mutated inputs joins the corpus that later mutations
    start from (up to ``max_corpus`` inputs)."""
    rng = random.Random(seed)
    corpus = list(seeds)
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        if rng.random() < random_share:
            data = rng.randbytes(rng.randint(0, max_random))
        else:
            data = mutate(rng, rng.choice(corpus))
            if keep_share and len(corpus) < max_corpus and rng.random() < keep_share:
                corpus.append(data)
        one_input(data)
        runs += 1
    return runs


@dataclass(frozen=True)
class Harness:
    """One fuzz target: the function under test and what the random loop feeds it."""

    one_input: OneInput
    mutate: Mutate
    seeds: Sequence[bytes]
    random_share: float = 0.2
    max_random: int = 128
    keep_share: float = 0.0

    def random_loop(self, seconds: float = 10.0, seed: int | None = None) -> int:
        return random_loop(self.one_input, self.mutate, self.seeds, seconds=seconds, seed=seed,
                           random_share=self.random_share, max_random=self.max_random,
                           keep_share=self.keep_share)

    def main(self, argv: Sequence[str] | None = None) -> None:
        args = list(sys.argv if argv is None else argv)
        try:
            atheris = importlib.import_module("atheris")
        except ImportError:
            seconds = float(args[1]) if len(args) > 1 else 10.0
            runs = self.random_loop(seconds)
            print(f"atheris not installed; {runs} random inputs in {seconds:g}s OK")
            return
        atheris.Setup(args, self.one_input)
        atheris.Fuzz()
