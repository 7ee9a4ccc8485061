"""The quantize runner as a process: its stdout is nothing but core.quantize events, one per
tensor in between, and the output is a GGUF of the requested type."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pollama.adapters import gguf_file
from pollama.core import quantize as q
from tests import tinygguf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tinygguf.write(str(tmp_path_factory.mktemp("tiny") / "tiny-f16.gguf"))


def run(*args: str) -> tuple[int, list[q.Event], str]:
    r = subprocess.run([sys.executable, "-m", "pollama.runners.quantize", *args],
                       capture_output=True, timeout=120)
    lines = r.stdout.decode().splitlines()
    return r.returncode, [q.decode_event(json.loads(line)) for line in lines], r.stderr.decode()


@pytest.mark.parametrize("raw, name", [("q8_0", "Q8_0"), ("q4_K_M", "Q4_K_M"), ("q4_0", "Q4_0"),
                                       ("q5_0", "Q5_0"), ("q5_k_s", "Q5_K_S"),
                                       ("q5_K", "Q5_K_M"), ("Q6_K", "Q6_K"),
                                       ("q3_K_M", "Q3_K_M"), ("q2_K", "Q2_K"),
                                       ("Q4_K_S", "Q4_K_S"), ("f32", "F32")])
def test_quantize(tiny: str, tmp_path: object, raw: str, name: str) -> None:
    out = os.path.join(str(tmp_path), "out.gguf")
    code, events, err = run(tiny, out, raw)
    assert code == 0, err
    assert events[0] == q.Started(ftype=q.TYPES[name])
    assert events[-1] == q.Finished(size=os.path.getsize(out))
    tensors = [e for e in events if isinstance(e, q.TensorStarted)]
    header = gguf_file.read_header(tiny, ())
    assert [e.index for e in tensors] == list(range(1, len(header.tensors) + 1))
    assert {e.name for e in tensors} == {t.name for t in header.tensors}
    assert gguf_file.read_facts(out).file_type == name
    src_size = os.path.getsize(tiny)
    assert ((os.path.getsize(out) > src_size) if name == "F32"
            else (os.path.getsize(out) < src_size))


@pytest.mark.parametrize("make_args, message", [
    (lambda d, src: [os.path.join(d, "missing.gguf"), os.path.join(d, "o"), "q8_0"],
     "quantization failed: no such file"),
    (lambda d, src: [src, os.path.join(d, "o"), "q5_x"],
     "unsupported quantization type Q5_X - supported types are " + q.SUPPORTED_MESSAGE),
    (lambda d, src: [src], "usage: python -m pollama.runners.quantize SRC DST TYPE"),
])
def test_errors_are_an_event_and_exit_1(tiny: str, tmp_path: object, make_args: object,
                                        message: str) -> None:
    code, events, _ = run(*make_args(str(tmp_path), tiny))  # type: ignore[operator]
    assert code == 1
    assert isinstance(events[-1], q.Failed) and events[-1].message.startswith(message)


def test_llama_cpp_failure_is_reported(tiny: str, tmp_path: object) -> None:
    broken = os.path.join(str(tmp_path), "broken.gguf")
    with open(tiny, "rb") as f, open(broken, "wb") as g:
        g.write(f.read(2000))  # header cut short: llama.cpp's loader refuses it
    code, events, _ = run(broken, os.path.join(str(tmp_path), "o"), "q8_0")
    assert code == 1
    assert isinstance(events[-1], q.Failed)
    assert events[-1].message.startswith("quantization failed: ")
    assert "failed to load model" in events[-1].message
