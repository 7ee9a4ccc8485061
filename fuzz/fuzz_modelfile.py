"""Fuzz target: Modelfile bytes -> decode -> parse -> to_text round trip -> create spec.

The only allowed outcomes are a valid result or a PollamaError; anything else (another
exception, a failed assertion) is a bug. Run under atheris if installed, otherwise a simple
mutational loop over seed Modelfiles for N seconds (default 10)::

    python fuzz/fuzz_modelfile.py [seconds]      # or: python fuzz/fuzz_modelfile.py -atheris_args
"""

from __future__ import annotations

import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _loop  # noqa: E402  (the shared driver next to this file)

from pollama.core.errors import PollamaError  # noqa: E402
from pollama.core.modelfile import (  # noqa: E402
    CreateSpec, Modelfile, decode_modelfile, parse_modelfile)


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
    b"FROM llama3.2\nPARAMETER temperature 0.7\nPARAMETER stop <|eot_id|>\n"
    b"SYSTEM You are terse.\n",
    b'FROM ./model.gguf\nTEMPLATE """{{ if .System }}{{ .System }}{{ end }}\n{{ .Prompt }}"""\n',
    b'# comment\nfrom x\nMESSAGE user "hi\nthere"\nMESSAGE assistant hello\n'
    b'LICENSE """\nMIT\n"""\n',
    b"FROM x\r\nADAPTER ~/lora.gguf\r\nDRAFT ./d.gguf\r\nREQUIRES 0.14.0\r\n"
    b"RENDERER r\r\nPARSER p\r\n",
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


# Mutations only, no random bytes; a mutated input joins the corpus now and then, so that
# edits pile up.
HARNESS = _loop.Harness(one_input, mutate, SEEDS, random_share=0.0, keep_share=0.05)
random_loop = HARNESS.random_loop

if __name__ == "__main__":
    HARNESS.main()
