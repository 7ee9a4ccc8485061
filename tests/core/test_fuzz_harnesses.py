"""Run the fuzz/ harnesses under Hypothesis: any bytes give a valid result or our own error.

Every in-process harness gets the same three runs (arbitrary bytes, small edits of its seeds,
a short random loop), plus the inputs that once reached a limit or a corner of its format.
"""

from __future__ import annotations

import struct
from types import ModuleType

import pytest
from hypothesis import given, strategies as st

from fuzz import (fuzz_gguf, fuzz_gotemplate, fuzz_jsonrpc, fuzz_manifest, fuzz_modelfile,
                  fuzz_names, fuzz_safetensors, fuzz_sse, fuzz_wire)
from pollama.core import gotemplate as gt
from pollama.core.manifest import parse_config, parse_manifest
from pollama.core.modelfile import parse_modelfile

HARNESSES: dict[str, ModuleType] = {m.__name__.removeprefix("fuzz."): m for m in (
    fuzz_gguf, fuzz_gotemplate, fuzz_jsonrpc, fuzz_manifest, fuzz_modelfile, fuzz_names,
    fuzz_safetensors, fuzz_sse, fuzz_wire)}

EXAMPLES = [
    ("fuzz_gotemplate", b"{{" * 1000),
    ("fuzz_gotemplate", b"{{ range 1000000000 }}{{ end }}"),
    ("fuzz_jsonrpc", b"[]"),
    ("fuzz_jsonrpc", b"Content-Length: 2\n\n{}"),
    ("fuzz_jsonrpc", b'{"jsonrpc":"2.0","id":1,"method":"chat","params":{"x":1e400}}'),
    ("fuzz_jsonrpc", b"[" * 100_000),
    ("fuzz_manifest", b"[" * 100_000),
    ("fuzz_modelfile", b'FROM x\nSYSTEM """'),
    ("fuzz_modelfile", b"\xff\xfeF\x00R\x00O\x00M\x00 \x00x\x00"),
    ("fuzz_names", b"../../etc/passwd"),
    ("fuzz_names", b"hf.co/user/repo:Q4_K_M"),
    ("fuzz_safetensors", struct.pack("<Q", 2**63) + b"{}"),
    ("fuzz_safetensors", struct.pack("<Q", 12) + b'{"a":' + b"[" * 7),
    ("fuzz_sse", b"\r"),
    ("fuzz_sse", b"\xef\xbb\xbfdata: x\r\n\r\n"),
    ("fuzz_sse", b"event: " + b"e" * 5000 + b"\ndata: x\n\n"),
    ("fuzz_wire", b"\n" * 10),
] + [(name, b"") for name in HARNESSES]


@pytest.mark.parametrize("name", HARNESSES)
@given(data=st.binary())
def test_any_bytes(name: str, data: bytes) -> None:
    HARNESSES[name].one_input(data)


@pytest.mark.parametrize(("name", "data"), EXAMPLES)
def test_examples(name: str, data: bytes) -> None:
    HARNESSES[name].one_input(data)


@pytest.mark.parametrize("name", HARNESSES)
@given(data=st.data())
def test_near_seeds(name: str, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(HARNESSES[name].SEEDS))
    pos = data.draw(st.integers(0, len(seed)))
    HARNESSES[name].one_input(seed[:pos] + data.draw(st.binary(max_size=8)) + seed[pos:])


@pytest.mark.parametrize("name", HARNESSES)
def test_random_loop(name: str) -> None:
    assert HARNESSES[name].random_loop(seconds=0.2, seed=1) > 0


# The seeds are valid inputs: mutations start from inside the format, not outside it.


def test_gotemplate_seeds_parse_and_render() -> None:
    for seed in fuzz_gotemplate.SEEDS:
        t = gt.parse(seed.decode())
        assert isinstance(gt.render_chat(t, list(fuzz_gotemplate.MESSAGES),
                                         tools=list(fuzz_gotemplate.TOOLS)), str)


def test_manifest_seeds_are_valid() -> None:
    parse_manifest(fuzz_manifest.SEEDS[0])
    parse_config(fuzz_manifest.SEEDS[1])


def test_modelfile_seeds_parse() -> None:
    for seed in fuzz_modelfile.SEEDS:
        parse_modelfile(seed).to_create_spec()
