"""core/options.py: option phases, merging, load specs and Modelfile PARAMETER parsing."""

from __future__ import annotations

import pytest

from pollama.core import options
from pollama.core.errors import BadRequest


def test_options_phases_and_merge() -> None:
    merged = options.merge(options.DEFAULTS, {"temperature": 0.1, "num_ctx": 100},
                           {"temperature": 0})
    load, runtime = options.split(merged)
    assert load["num_ctx"] == 100 and runtime["temperature"] == 0
    spec = options.load_spec(load, default_num_ctx=4096, ctx_train=50)
    assert spec["num_ctx"] == 50
    assert options.load_spec({}, default_num_ctx=2, ctx_train=None)["num_ctx"] == 4
    # vision models get at least 2048 positions, still within the trained context
    assert options.load_spec({"num_ctx": 512}, default_num_ctx=4096, ctx_train=None,
                             vision=True)["num_ctx"] == 2048
    assert options.load_spec({"num_ctx": 512}, default_num_ctx=4096, ctx_train=1024,
                             vision=True)["num_ctx"] == 1024
    assert options.load_spec({"num_ctx": 8192}, default_num_ctx=4096, ctx_train=None,
                             vision=True)["num_ctx"] == 8192


@pytest.mark.parametrize(("name", "raw", "value"), [
    ("temperature", "0.5", 0.5), ("num_ctx", "2048", 2048), ("use_mmap", "false", False),
    ("stop", "<|im_end|>", ["<|im_end|>"]),
])
def test_parse_parameter(name: str, raw: str, value: object) -> None:
    assert options.parse_parameter(name, raw) == value


def test_parse_parameter_errors() -> None:
    with pytest.raises(BadRequest, match="unknown parameter 'bogus'"):
        options.parse_parameter("bogus", "1")
    with pytest.raises(BadRequest, match=r"invalid int value \[x\]"):
        options.parse_parameter("num_ctx", "x")


@pytest.mark.parametrize(("name", "raw"), [
    ("num_ctx", " 5"), ("num_ctx", "1_0"), ("num_ctx", "٣"), ("num_ctx", "1.0"),
    ("temperature", "1_0"), ("temperature", " 1 "), ("temperature", "abc"), ("use_mmap", "yes"),
])
def test_parse_parameter_strict_like_go(name: str, raw: str) -> None:
    with pytest.raises(BadRequest):
        options.parse_parameter(name, raw)


@pytest.mark.parametrize(("raw", "value"), [("+5", 5), ("-1", -1), ("007", 7)])
def test_parse_parameter_go_ints(raw: str, value: int) -> None:
    assert options.parse_parameter("num_predict", raw) == value
    assert options.parse_parameter("temperature", "1e-2") == 0.01
