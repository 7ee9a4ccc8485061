"""Resource limits and extreme numbers against a real pollama serve and runner (issue 9).

Each hostile request gets a 400 with ``{"error": ...}`` in plain words (no Python exception
names), or, where Go and Ollama accept the value, a normal answer; either way the server keeps
answering and /api/ps keeps working. Bounded work is checked by outcome: the 400 arrives, the
runner survives."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.e2e

PY_ERROR = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b|Traceback|internal error")
BIG = int("9" * 400)
TOOLS_TEMPLATE = """{{- if .Tools }}<|im_start|>system
<tools>{{ range .Tools }}{{ .Function }}{{ end }}</tools>
Call a tool as <tool_call>{"name": <name>, "arguments": <args>}</tool_call><|im_end|>
{{ end }}{{ range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=300) as c:
        r = c.post("/api/create", json={"model": "smollimits", "from": "smol",
                                        "template": TOOLS_TEMPLATE, "stream": False})
        assert r.status_code == 200, r.text
        yield c
        # leave the shared server as other tests expect it: the default keep_alive again
        c.post("/api/generate", json={"model": "smol", "keep_alive": "5m"})


def bad(c: httpx.Client, path: str, body: Any, raw: bytes | None = None) -> str:
    r = c.post(path, content=raw, headers={"Content-Type": "application/json"}) \
        if raw is not None else c.post(path, json=body)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    error = r.json()["error"]
    assert isinstance(error, str) and error and not PY_ERROR.search(error), error
    still_alive(c)
    return error


def still_alive(c: httpx.Client) -> None:
    assert c.get("/api/tags").status_code == 200
    r = c.get("/api/ps")
    assert r.status_code == 200, r.text
    for m in r.json()["models"]:
        datetime.fromisoformat(m["expires_at"].replace("Z", "+00:00"))


def generate(c: httpx.Client, **body: Any) -> dict[str, Any]:
    r = c.post("/api/generate", json={"model": "smol", "prompt": "Say hi", "stream": False,
                                       "options": {"num_predict": 8}, **body})
    assert r.status_code == 200, r.text
    still_alive(c)
    return dict(r.json())


def deep(n: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(n):
        node = {"anyOf": [node]}
    return node


# -- format schemas ---------------------------------------------------------------------------

def test_items_any_is_a_json_array(client: httpx.Client) -> None:
    """Was a 400 ``invalid format: KeyError: 'prefixItems'``."""
    out = generate(client, prompt="Give a JSON array of the numbers 1, 2 and 3",
                   format={"type": "array", "items": {}},
                   options={"temperature": 0, "num_predict": 40})
    assert isinstance(json.loads(out["response"]), list)


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
def test_deep_schema_is_a_400(client: httpx.Client, path: str) -> None:
    """Was a 500 ``maximum recursion depth exceeded``."""
    body = {"model": "smol", "format": deep(300), "stream": False, "prompt": "x",
            "messages": [{"role": "user", "content": "x"}]}
    assert bad(client, path, body).startswith(
        "invalid format: the schema is nested more than 100 levels deep")


@pytest.mark.parametrize(("fmt", "message"), [
    ({"type": "string", "minLength": 5_000_000},
     "invalid format: minLength 5000000 at the top level is over the limit of 2000 repetitions"),
    ({"type": "object", "properties": {"xs": {"type": "array", "minItems": 10**9}}},
     "invalid format: minItems 1000000000 at #/properties/xs is over the limit of 2000 "
     "repetitions"),
    ({"type": "string", "pattern": "^a{99999999}$"},
     "invalid format: the pattern at the top level repeats 99999999 times, over the limit of "
     "2000 repetitions"),
    ({"type": "integer", "minimum": 10**30},
     "invalid format: the integer bounds at the top level are outside the 64-bit range"),
])
def test_huge_repetitions_are_refused(client: httpx.Client, fmt: Any, message: str) -> None:
    """The runner spelled these out literally and grew without bound (7.9 GB after a minute);
    now the API refuses them before any runner is involved."""
    assert bad(client, "/api/generate", {"model": "smol", "prompt": "x", "format": fmt}) == message


def test_allof_expansion_is_refused(client: httpx.Client) -> None:
    defs: dict[str, Any] = {"L30": {"properties": {"x": {"type": "string"}}}}
    for i in range(30):
        ref = {"$ref": f"#/$defs/L{i + 1}"}
        defs[f"L{i}"] = {"properties": {"x": {"allOf": [ref, ref]}}}
    fmt = {"$defs": defs, "allOf": [{"$ref": "#/$defs/L0"}]}
    assert "too large for a grammar" in bad(client, "/api/chat", {
        "model": "smol", "format": fmt, "messages": [{"role": "user", "content": "x"}]})


@pytest.mark.parametrize("fmt", [
    {"type": "string", "maxLength": 1500},  # spelled out as 1500 nested groups, the runner died
    {"type": "string", "maxLength": 5_000_000},  # over llama.cpp's threshold: unbounded
    {"type": "array", "items": {"type": "integer"}, "maxItems": 2000},
])
def test_long_but_valid_repetitions_work(client: httpx.Client, fmt: Any) -> None:
    generate(client, format=fmt)


def test_tool_parameters_are_bounded(client: httpx.Client) -> None:
    tool = {"type": "function", "function": {"name": "pick", "parameters": {
        "type": "object", "properties": {"xs": {"type": "array", "minItems": 10**7}}}}}
    body = {"model": "smollimits", "messages": [{"role": "user", "content": "x"}],
            "tools": [tool], "tool_choice": "required", "stream": False}
    assert bad(client, "/api/chat", body) == (
        'invalid parameters for tool "pick": minItems 10000000 at #/properties/xs is over the '
        "limit of 2000 repetitions")
    tool["function"]["parameters"]["properties"]["xs"] = {  # type: ignore[index]
        "type": "string", "maxLength": 1500}
    r = client.post("/api/chat", json=dict(body, options={"num_predict": 30}))
    assert r.status_code == 200, r.text
    still_alive(client)


# -- keep_alive -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [9223372036854775807, 1e308, 9.2e9, -1])
def test_huge_keep_alive_saturates_and_ps_works(client: httpx.Client, value: Any) -> None:
    """/api/ps answered 500 while such a model stayed loaded (for ever)."""
    generate(client, keep_alive=value)
    models = client.get("/api/ps").json()["models"]
    expires = [datetime.fromisoformat(m["expires_at"].replace("Z", "+00:00")) for m in models
               if m["name"].startswith("smol")]
    assert expires and all(2300 <= e.year < 2320 for e in expires)


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"model":"smol","prompt":"x","keep_alive":"99999999999h"}',
     'time: invalid duration "99999999999h"'),
    (b'{"model":"smol","prompt":"x","keep_alive":1e400}',
     "json: cannot unmarshal number out of the float64 range into Go struct field "
     "GenerateRequest.keep_alive of type float64"),
    (b'{"model":"smol","messages":[],"keep_alive":' + str(BIG).encode() + b"}",
     f"json: cannot unmarshal number {BIG} into Go struct field ChatRequest.keep_alive of type "
     "float64"),
])
def test_keep_alive_go_errors(client: httpx.Client, raw: bytes, message: str) -> None:
    path = "/api/chat" if b"messages" in raw else "/api/generate"
    assert bad(client, path, None, raw=raw) == message


# -- context, options -------------------------------------------------------------------------

@pytest.mark.parametrize(("context", "message"), [
    ([1, 10**6], "invalid context: token 1000000 is not in the model's vocabulary (0 to 49151)"),
    ([2**40], "invalid context: token 1099511627776 is not in the model's vocabulary "
              "(0 to 49151)"),
    ([-1], "invalid context: token -1 is not in the model's vocabulary (0 to 49151)"),
    ([10**20], "json: cannot unmarshal number 100000000000000000000 into Go struct field "
               "GenerateRequest.context of type int"),
])
def test_context_tokens(client: httpx.Client, context: list[int], message: str) -> None:
    """Were 500s (``OverflowError``, ``llama_decode returned -1``) from the runner."""
    assert bad(client, "/api/generate", {"model": "smol", "prompt": "x", "context": context,
                                         "stream": False}) == message


def test_number_with_400_digits(client: httpx.Client) -> None:
    raw = b'{"model":"smol","prompt":"x","options":{"num_predict":' + str(BIG).encode() + b"}}"
    assert bad(client, "/api/generate", None, raw=raw) == (
        f"json: cannot unmarshal number {BIG} into Go struct field GenerateRequest.options of "
        "type float64")
    raw = b'{"model":"smol","messages":[],"options":{"temperature":1e999}}'
    assert bad(client, "/api/chat", None, raw=raw) == (
        "json: cannot unmarshal number out of the float64 range into Go struct field "
        "ChatRequest.options of type float64")


def test_extreme_option_values_run(client: httpx.Client) -> None:
    """Values Go's decoder and Ollama accept: int64 extremes, huge floats, huge load options
    (num_thread 10^6 killed the runner with std::bad_alloc, num_batch 2^62 asked numpy for
    384 TiB); they are saturated or clamped and the model answers."""
    for value in (2**63 - 1, -2**63, 1e300):
        generate(client, options={"seed": value, "top_k": value, "repeat_last_n": value,
                                  "num_keep": value, "num_predict": 4})
    generate(client, options={k: 1e300 for k in ("temperature", "top_p", "min_p", "typical_p",
                                                 "repeat_penalty", "presence_penalty",
                                                 "frequency_penalty")} | {"num_predict": 4})
    generate(client, options={"num_ctx": 2**62, "num_batch": 2**62, "num_gpu": 2**62,
                              "num_thread": 10**6, "num_predict": 4})
    generate(client, options={"num_predict": 4})  # and back to the default load
