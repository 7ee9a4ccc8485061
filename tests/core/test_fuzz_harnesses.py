"""Run the fuzz/ harnesses under Hypothesis: any bytes give a valid result or our own error."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from hypothesis import example, given, strategies as st

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"


def load_harness(filename: str) -> ModuleType:
    path = FUZZ_DIR / filename
    spec = importlib.util.spec_from_file_location(f"fuzz_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz_names = load_harness("fuzz_names.py")
fuzz_manifest = load_harness("fuzz_manifest.py")


@given(st.binary())
@example(b"")
@example(b"../../etc/passwd")
@example(b"hf.co/user/repo:Q4_K_M")
def test_fuzz_names(data: bytes) -> None:
    fuzz_names.one_input(data)


@given(st.sampled_from(fuzz_names.SEEDS), st.binary(max_size=8), st.integers(0, 64))
def test_fuzz_names_near_seeds(seed: bytes, insert: bytes, pos: int) -> None:
    fuzz_names.one_input(seed[:pos] + insert + seed[pos:])


def test_fuzz_names_random_loop() -> None:
    assert fuzz_names.random_loop(seconds=0.2, seed=1) > 0


@given(st.binary())
@example(b"")
@example(b"[" * 100_000)
def test_fuzz_manifest(data: bytes) -> None:
    fuzz_manifest.one_input(data)


@given(st.sampled_from(fuzz_manifest.SEEDS), st.binary(max_size=8), st.integers(0, 600))
def test_fuzz_manifest_near_seeds(seed: bytes, insert: bytes, pos: int) -> None:
    fuzz_manifest.one_input(seed[:pos] + insert + seed[pos:])


def test_fuzz_manifest_seeds_are_valid() -> None:
    from pollama.core.manifest import parse_config, parse_manifest

    parse_manifest(fuzz_manifest.SEEDS[0])
    parse_config(fuzz_manifest.SEEDS[1])


def test_fuzz_manifest_random_loop() -> None:
    assert fuzz_manifest.random_loop(seconds=0.2, seed=1) > 0


fuzz_modelfile = load_harness("fuzz_modelfile.py")


@given(st.binary())
@example(b"")
@example(b'FROM x\nSYSTEM """')
@example(b"\xff\xfeF\x00R\x00O\x00M\x00 \x00x\x00")
def test_fuzz_modelfile(data: bytes) -> None:
    fuzz_modelfile.one_input(data)


@given(st.sampled_from(fuzz_modelfile.SEEDS), st.binary(max_size=8), st.integers(0, 200))
def test_fuzz_modelfile_near_seeds(seed: bytes, insert: bytes, pos: int) -> None:
    fuzz_modelfile.one_input(seed[:pos] + insert + seed[pos:])


def test_fuzz_modelfile_seeds_parse() -> None:
    from pollama.core.modelfile import parse_modelfile

    for seed in fuzz_modelfile.SEEDS:
        parse_modelfile(seed).to_create_spec()


def test_fuzz_modelfile_random_loop() -> None:
    assert fuzz_modelfile.random_loop(0.2) > 0


fuzz_wire = load_harness("fuzz_wire.py")


@given(st.binary())
@example(b"")
@example(b"\n" * 10)
def test_fuzz_wire(data: bytes) -> None:
    fuzz_wire.one_input(data)


@given(st.sampled_from(fuzz_wire.SEEDS), st.binary(max_size=8), st.integers(0, 200))
def test_fuzz_wire_near_seeds(seed: bytes, insert: bytes, pos: int) -> None:
    fuzz_wire.one_input(seed[:pos] + insert + seed[pos:])


def test_fuzz_wire_random_loop() -> None:
    assert fuzz_wire.random_loop(seconds=0.2, seed=1) > 0


fuzz_sse = load_harness("fuzz_sse.py")


@given(st.binary())
@example(b"")
@example(b"\r")
@example(b"\xef\xbb\xbfdata: x\r\n\r\n")
@example(b"event: " + b"e" * 5000 + b"\ndata: x\n\n")
def test_fuzz_sse(data: bytes) -> None:
    fuzz_sse.one_input(data)


@given(st.sampled_from(fuzz_sse.SEEDS), st.binary(max_size=8), st.integers(0, 120))
def test_fuzz_sse_near_seeds(seed: bytes, insert: bytes, pos: int) -> None:
    fuzz_sse.one_input(seed[:pos] + insert + seed[pos:])


def test_fuzz_sse_random_loop() -> None:
    assert fuzz_sse.random_loop(seconds=0.2, seed=1) > 0


fuzz_jsonrpc = load_harness("fuzz_jsonrpc.py")


@given(st.binary())
@example(b"")
@example(b"[]")
@example(b"Content-Length: 2\n\n{}")
@example(b'{"jsonrpc":"2.0","id":1,"method":"chat","params":{"x":1e400}}')
@example(b"[" * 100_000)
def test_fuzz_jsonrpc(data: bytes) -> None:
    fuzz_jsonrpc.one_input(data)


@given(st.sampled_from(fuzz_jsonrpc.SEEDS), st.binary(max_size=8), st.integers(0, 200))
def test_fuzz_jsonrpc_near_seeds(seed: bytes, insert: bytes, pos: int) -> None:
    fuzz_jsonrpc.one_input(seed[:pos] + insert + seed[pos:])


def test_fuzz_jsonrpc_random_loop() -> None:
    assert fuzz_jsonrpc.random_loop(seconds=0.2, seed=1) > 0
