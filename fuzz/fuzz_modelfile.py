"""Fuzz target: Modelfile bytes -> decode -> parse -> to_text round trip -> create spec.

The only allowed outcomes are a valid result or a PollamaError; anything else (another
exception, a failed assertion) is a bug. Run under atheris if installed, otherwise a simple
mutational loop over seed Modelfiles for N seconds (default 10)::

    python fuzz/fuzz_modelfile.py [seconds]      # or: python fuzz/fuzz_modelfile.py -atheris_args
"""

from __future__ import annotations

import random
import sys
import time

from pollama.core.errors import PollamaError
from pollama.core.modelfile import CreateSpec, Modelfile, decode_modelfile, parse_modelfile


def one_input(data: bytes) -> None:
    text = decode_modelfile(data)
    try:
        m = parse_modelfile(text)
    except PollamaError:
        return
    assert isinstance(m, Modelfile)
    assert any(c.name == "from" for c in m.commands)
    # Everything the parser produces must serialise back to the same commands.
    again = parse_modelfile(m.to_text())
    assert again == m, (m, m.to_text(), again)
    try:
        spec = m.to_create_spec()
    except PollamaError:
        return
    assert isinstance(spec, CreateSpec)


SEEDS: tuple[bytes, ...] = (
    b"FROM llama3.2\nPARAMETER temperature 0.7\nPARAMETER stop <|eot_id|>\nSYSTEM You are terse.\n",
    b'FROM ./model.gguf\nTEMPLATE """{{ if .System }}{{ .System }}{{ end }}\n{{ .Prompt }}"""\n',
    b'# comment\nfrom x\nMESSAGE user "hi\nthere"\nMESSAGE assistant hello\nLICENSE """\nMIT\n"""\n',
    b"FROM x\r\nADAPTER ~/lora.gguf\r\nDRAFT ./d.gguf\r\nREQUIRES 0.14.0\r\nRENDERER r\r\nPARSER p\r\n",
    b"\xff\xfeF\x00R\x00O\x00M\x00 \x00x\x00\n\x00",
)
TOKENS: tuple[bytes, ...] = (
    b"FROM ", b"PARAMETER ", b"MESSAGE ", b"SYSTEM ", b"TEMPLATE ", b"LICENSE ", b"REQUIRES ",
    b"user ", b"stop ", b"num_ctx ", b'"""', b'"', b"\n", b"\r\n", b"\t", b" ", b"#", b"\x00",
    b"\xef\xbb\xbf", b"\xff\xfe", b"\xe4\xbd\xa0", b"\xf0\x9f\x91\x8b",
)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        pos = rng.randint(0, len(buf))
        op = rng.randrange(5)
        if op == 0:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 1 and buf:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 2:
            buf[pos:pos] = bytes([rng.randrange(256)])
        elif op == 3:
            other = rng.choice(SEEDS)
            start = rng.randint(0, len(other))
            buf[pos:pos] = other[start : start + rng.randint(1, 40)]
        else:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(buf)


def random_loop(seconds: float) -> int:
    rng = random.Random()
    deadline = time.monotonic() + seconds
    corpus = list(SEEDS)
    runs = 0
    while time.monotonic() < deadline:
        data = mutate(rng, rng.choice(corpus))
        one_input(data)
        runs += 1
        if len(corpus) < 1000 and rng.random() < 0.05:
            corpus.append(data)
    return runs


def main() -> None:
    try:
        import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
        runs = random_loop(seconds)
        print(f"fuzz_modelfile: {runs} inputs in {seconds:g}s, no failures")
        return
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
