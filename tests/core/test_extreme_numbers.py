"""Extreme numbers in requests (issue 9): what Go's decoder and Ollama's checks refuse is a
400 with their message; what they accept stays within ranges the rest of pollama can format
and pass to llama.cpp (keep_alive expiries, 32-bit C parameters)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import options
from pollama.core import requests as rq
from pollama.core.errors import BadRequest
from pollama.core.timefmt import rfc3339

MAX_NS = 2**63 - 1
BIG = int("9" * 400)


def error(fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(BadRequest) as info:
        fn(*args, **kw)
    assert info.value.status_hint == 400
    return info.value.message


# -- Go's time.ParseDuration ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "ns"), [
    # cases of Go's own time package tests
    ("0", 0), ("5s", 5 * 10**9), ("-5s", -5 * 10**9), ("+5s", 5 * 10**9), ("1.5h", 5400 * 10**9),
    (".5s", 5 * 10**8), ("1.s", 10**9), ("1h30m", 5400 * 10**9), ("1.004s", 1_004_000_000),
    ("100.00100s", 100_001_000_000), ("9223372036854775807ns", MAX_NS),
    ("9223372036854775.807us", MAX_NS), ("9223372036854.775807ms", MAX_NS),
    ("-9223372036854775808ns", -2**63), ("2562047h47m16.854775807s", MAX_NS),
    ("-2562047h47m16.854775808s", -2**63), ("0.3333333333333333333h", 1_200_000_000_000),
    ("0.100000000000000000000h", 360_000_000_000), ("000000000000000000000001s", 10**9),
    ("1µs", 1000), ("1μs", 1000), ("1us", 1000),
])
def test_go_durations(text: str, ns: int) -> None:
    assert rq.parse_go_duration(text) == ns


@pytest.mark.parametrize(("text", "message"), [
    ("99999999999h", 'time: invalid duration "99999999999h"'),
    ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
    ("-9223372036854775809ns", 'time: invalid duration "-9223372036854775809ns"'),
    ("9223372036854776us", 'time: invalid duration "9223372036854776us"'),
    ("3000000h", 'time: invalid duration "3000000h"'),
    ("2562047h47m16.854775808s", 'time: invalid duration "2562047h47m16.854775808s"'),
    pytest.param("1" * 5000 + "s", 'time: invalid duration "' + "1" * 5000 + 's"',
                 id="5000-digits"),
    ("", 'time: invalid duration ""'), ("-", 'time: invalid duration "-"'),
    (".s", 'time: invalid duration ".s"'), ("3", 'time: missing unit in duration "3"'),
    ("1e3s", 'time: unknown unit "e" in duration "1e3s"'),
    ("5\u00e9", 'time: unknown unit "\\xc3\\xa9" in duration "5\\xc3\\xa9"'),
    ('1"s', 'time: unknown unit "\\"s" in duration "1\\"s"'),
])
def test_go_duration_errors(text: str, message: str) -> None:
    assert error(rq.parse_go_duration, text) == message


# -- keep_alive -------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "ns"), [
    (9223372036854775807, rq.FOREVER),  # seconds × 1e9 past int64: Go's largest Duration
    (1e308, rq.FOREVER), (9.2e9, 9_200_000_000_000_000_000), (9.3e9, rq.FOREVER),
    (1.5, 1_500_000_000), (-1e308, rq.FOREVER), (0, 0),
    ("-2562047h47m16.854775808s", rq.FOREVER), ("2562047h47m16.854775807s", MAX_NS),
])
def test_keep_alive_saturates_as_go(value: Any, ns: int) -> None:
    assert rq.parse_keep_alive(value) == ns


def test_keep_alive_go_decoder_errors() -> None:
    assert error(rq.parse_generate, {"model": "m", "keep_alive": "99999999999h"}) == \
        'time: invalid duration "99999999999h"'
    assert error(rq.parse_chat, {"model": "m", "keep_alive": BIG}) == (
        f"json: cannot unmarshal number {BIG} into Go struct field ChatRequest.keep_alive of "
        "type float64")
    assert error(rq.parse_generate, {"model": "m", "keep_alive": math.inf}) == (
        "json: cannot unmarshal number out of the float64 range into Go struct field "
        "GenerateRequest.keep_alive of type float64")


@given(st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=30),
                 st.from_regex(r"-?[0-9]{1,25}(\.[0-9]{0,25})?(ns|us|ms|s|m|h)", fullmatch=True)))
def test_every_keep_alive_gives_a_formattable_expiry(value: Any) -> None:
    """/api/ps formats now + keep_alive: every accepted value must give a valid date."""
    try:
        ns = rq.parse_keep_alive(value)
    except BadRequest:
        return
    assert ns is not None and (ns == rq.FOREVER or 0 <= ns <= MAX_NS)
    now = 1_800_000_000 * 10**9
    rfc3339(now + (MAX_NS if ns == rq.FOREVER else ns))


# -- context ----------------------------------------------------------------------------------

def test_context_out_of_int64_is_gos_decoder_error() -> None:
    assert rq.parse_generate({"model": "m", "context": [1, 2**63 - 1, -2**63]}).context == \
        (1, 2**63 - 1, -2**63)  # Go's int holds these; the runner checks the vocabulary
    assert error(rq.parse_generate, {"model": "m", "context": [1, 10**20]}) == (
        "json: cannot unmarshal number 100000000000000000000 into Go struct field "
        "GenerateRequest.context of type int")
    assert error(rq.parse_generate, {"model": "m", "context": [-2**63 - 1]}) == (
        "json: cannot unmarshal number -9223372036854775809 into Go struct field "
        "GenerateRequest.context of type int")
    assert error(rq.parse_generate, {"model": "m", "context": [1e20]}) == (
        "json: cannot unmarshal number 1e+20 into Go struct field GenerateRequest.context of "
        "type int")


# -- options ----------------------------------------------------------------------------------

def test_integer_option_with_400_digits_is_gos_decoder_error() -> None:
    assert error(rq.parse_generate, {"model": "m", "options": {"num_predict": BIG}}) == (
        f"json: cannot unmarshal number {BIG} into Go struct field GenerateRequest.options of "
        "type float64")
    assert error(rq.parse_chat, {"model": "m", "options": {"temperature": -BIG}}) == (
        f"json: cannot unmarshal number -{BIG} into Go struct field ChatRequest.options of type "
        "float64")
    assert error(rq.parse_chat, {"model": "m", "options": {"seed": math.inf}}) == (
        "json: cannot unmarshal number out of the float64 range into Go struct field "
        "ChatRequest.options of type float64")
    assert error(rq.parse_create, {"model": "m", "parameters": {"top_k": BIG}}).endswith(
        "into Go struct field CreateRequest.parameters of type float64")


def test_integer_options_are_gos_int64() -> None:
    o = rq.parse_generate({"model": "m", "options": {
        "num_predict": 1e300, "seed": -1e300, "top_k": 2**63 - 1, "num_keep": 2**63,
        "repeat_last_n": 3.9, "temperature": 1e300}}).options
    assert o == {"num_predict": 2**63 - 1, "seed": -2**63, "top_k": 2**63 - 1,
                 "num_keep": 2**63 - 1, "repeat_last_n": 3, "temperature": 1e300}


def test_load_options_are_bounded_for_llama_cpp() -> None:
    spec = options.load_spec({"num_ctx": 2**62, "num_batch": 2**62, "num_gpu": 2**62,
                              "num_thread": 10**6}, default_num_ctx=2048, ctx_train=None)
    assert spec["num_ctx"] == 2**31 - 1 and spec["num_batch"] == 2**31 - 1
    assert spec["num_gpu"] == 2**31 - 1 and spec["num_thread"] == options.MAX_THREADS == 512
    spec = options.load_spec({"num_ctx": 2**62, "num_batch": 2**62, "num_gpu": -2**63,
                              "num_thread": -2**63}, default_num_ctx=2048, ctx_train=8192)
    assert spec["num_ctx"] == 8192 and spec["num_batch"] == 8192  # a batch fits the context
    assert spec["num_gpu"] == -1 and spec["num_thread"] == 0
    assert options.load_spec({}, default_num_ctx=2048, ctx_train=None)["num_batch"] == 512


# -- schemas at parse time ----------------------------------------------------------------------

def test_format_and_tools_are_checked_when_parsed() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(300):
        deep = {"anyOf": [deep]}
    assert error(rq.check_format, deep).startswith(
        "invalid format: the schema is nested more than 100 levels deep")
    assert rq.check_format({"type": "array", "items": {}}) == {"type": "array", "items": {}}
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"s": {"type": "string", "minLength": 10**7}}}}}
    body = {"model": "m", "messages": [], "tools": [tool]}
    assert error(rq.parse_chat, body) == ('invalid parameters for tool "f": minLength 10000000 '
                                          "at #/properties/s is over the limit of 2000 "
                                          "repetitions")
    assert rq.parse_chat(dict(body, tool_choice="none")).tools == ()  # tools not offered


@pytest.mark.parametrize(("name", "raw", "value"), [
    ("num_ctx", "9223372036854775807", 2**63 - 1), ("seed", "-9223372036854775808", -2**63),
    ("num_ctx", "00000000000000000000000000042", 42), ("temperature", "1e308", 1e308),
])
def test_modelfile_parameters_in_range(name: str, raw: str, value: object) -> None:
    assert options.parse_parameter(name, raw) == value


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("num_ctx", "9223372036854775808", "invalid int value [9223372036854775808]"),
    pytest.param("num_predict", "9" * 400, f"invalid int value [{'9' * 400}]", id="400-digits"),
    pytest.param("num_predict", "9" * 5000, f"invalid int value [{'9' * 5000}]",
                 id="5000-digits"),
    ("temperature", "1e400", "invalid float value [1e400]"),
    ("temperature", "inf", "invalid float value [inf]"),
    ("top_p", "NaN", "invalid float value [NaN]"),
])
def test_modelfile_parameters_out_of_range(name: str, raw: str, message: str) -> None:
    """Go's strconv range errors (PARAMETER values are parsed with ParseInt/ParseFloat);
    infinities and NaN could never be sent to a runner as JSON, so they are refused too."""
    assert error(options.parse_parameter, name, raw) == message
