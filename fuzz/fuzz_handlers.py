"""Fuzz target: every route of core/routes.py ROUTES with mutated bodies, paths and queries.

Each case sends well-framed HTTP requests (Content-Length, ``Connection: close``) to a real
``pollama serve`` with the test model created as ``smol`` (plus ``smoltools`` and
``smolthink``, whose templates take tools and thinking, so tool schemas and two-pass ``format``
reach the grammar). Bodies start from a valid request for the route and get JSON-level
mutations: wrong types, nulls, extreme numbers (1e308, 1e999, 2**63, 400-digit ints, -0),
deep nesting, long strings, duplicate keys, raw byte flips; ``format`` and tool ``parameters``
get random JSON schemas with extreme bounds (they become llama.cpp grammars); ``options``,
``keep_alive``, ``context``, ``think``, images (bad base64), templates, messages. ``/v2`` gets
mutated path segments, queries, ``Range``, upload sessions and manifest PUT bodies.

Generation stays bounded: seeds use ``num_predict`` 1-4, and a request whose ``num_predict`` a
mutation changed is sent streamed and read for at most 64 lines. After each case the server must
answer ``GET /api/version`` and ``GET /api/ps`` (which reflects scheduler state a request may
have broken) without a 5xx.

    python -m fuzz.fuzz_handlers --cases 20000 --seed 7
    python -m fuzz.fuzz_handlers --seed 7 --case 1234 -v     # replay one case
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _live  # noqa: E402  (the shared live-server driver; it puts the repo on sys.path)
import _loop  # noqa: E402  (the mutations the in-process harnesses use)

import base64  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import quote  # noqa: E402

from _live import Case, Conn, Target  # noqa: E402

from pollama.core.options import DEPRECATED, SPECS  # noqa: E402
from pollama.core.routes import ROUTES  # noqa: E402
from tests.templates import THINK_TEMPLATE, TOOLS_TEMPLATE  # noqa: E402

M = _live.MODEL

# ---------------------------------------------------------------------------------------------
# JSON with the tokens Python's encoder cannot write: raw numbers, duplicate keys, deep nesting


class Raw:
    """JSON text written as is (``-0``, ``1e999``, ``"\\ud800"``, ``[[[[...]]]]``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}{'...' if len(self.text) > 40 else ''})"


class Dup:
    """An object with repeated keys, in order."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Dup):
        return "{" + ",".join(json.dumps(k) + ":" + dump(v) for k, v in value.pairs) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + dump(v)
                              for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)


def deep_array(n: int) -> Raw:
    return Raw("[" * n + "]" * n)


def deep_object(n: int) -> Raw:
    return Raw('{"a":' * n + "1" + "}" * n)


NUMBERS: list[Any] = [
    0, 1, -1, Raw("-0"), Raw("-0.0"), Raw("0.0e0"), Raw("1e308"), Raw("-1e308"), Raw("1e999"),
    Raw("-1e999"), Raw("4.9e-324"), Raw("1E400"), 0.5, -0.5, 2**31 - 1, 2**31, 2**32,
    2**53 + 1, 2**63 - 1, 2**63, -2**63, -2**63 - 1, 2**64, Raw("9" * 400), Raw("-" + "9" * 400),
    Raw("1.0"), Raw("1e2"), Raw("123456789012345678901234567890.5"),
]
STRINGS: list[Any] = [
    "", " ", "a" * 100_000, "\u0000", Raw('"\\ud800"'), Raw('"\\udfff\\ud800x"'), "😀" * 500,
    "99999999999h", "1e308", "-1", "null", "true", "../../../etc/passwd", "%00", "\u202e",
    "x" * 300, "a:b:c", "sha256:" + "0" * 64, "-5m", "5m", "0", "\r\n\r\n", "<script>",
]
CONTAINERS: list[Any] = [
    [], {}, [None], [1, "a", None, {}, []], {"": None}, deep_array(64), deep_array(1000),
    deep_array(100_000), deep_object(1000), deep_object(100_000), Raw("[" + "0," * 99_999 + "0]"),
    Raw("{" + ",".join(f'"k{i}":{i}' for i in range(10_000)) + "}"),
]
INTERESTING: list[Any] = [None, True, False] + NUMBERS + STRINGS + CONTAINERS

TEMPLATES = [
    "{{ .Prompt }}", "{{", "{{ end }}", "{{ .Nope.Deeper }}", "{{ range 1000000000 }}x{{ end }}",
    '{{ define "a" }}{{ template "a" . }}{{ end }}{{ template "a" . }}',
    '{{ printf "%0999999999d" 1 }}', '{{ printf "%.999999999f" 1.0 }}', "{{ index .Messages 99 }}",
    "{{ slice .Prompt 5 1 }}", "{{ len 5 }}", "{{ .Prompt | html | js | urlquery }}",
    "{% for x in range(99999999) %}x{% endfor %}", "{{ call .Prompt }}", "{{ $x := 1 }}{{ $x.y }}",
    "{{ range .Messages }}{{ .Role }}{{ .Content }}{{ end }}", "{{/* unterminated",
]
IMAGES = [
    "", "!!!", "aGk", "aGk=", "=", "====", "aGk=\n", "a" * 1_000_001,
    base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode(),
    base64.b64encode(b"GIF89a" + bytes(range(256))).decode(), "data:image/png;base64,aGk=",
    Raw('"\\ud800"'), 5, None, [], {},
]
KEEP_ALIVES = [
    9223372036854775807, 2**63, Raw("1e308"), "99999999999h", "9223372036854775807ns",
    "10000000000000000000000h", -1, "-1h", "5m", "", "1.5.5s", "1e3s", "0", 0, Raw("-0.0"),
    "∞", [], {}, True, Raw("1e999"), "2562047h47m16.854775807s", "2562048h", -2**63, 0.001,
]
THINKS = [True, False, "high", "medium", "low", "max", "", "none", 1, None, [], "HIGH"]
CONTEXTS = [[2**31], [2**31 - 1], [-1], [49152], [0] * 3000, [Raw("9" * 400)], [Raw("1e308")],
            [0.5], [None, 1], ["1"], [2**63], list(range(100)), [], 5]


def option_values(name: str) -> list[Any]:
    if name == "stop":
        return [[], [""], ["a"] * 1000, ["x" * 100_000], [None], [5], "x", "", [Raw('"\\ud800"')]]
    return NUMBERS + [None, True, "5", "", [], {}]


# ---------------------------------------------------------------------------------------------
# JSON schemas for format and tool parameters


BOUNDS = [0, 1, 3, -1, 2**31, 10**6, 10**7, 2**63, Raw("9" * 400), Raw("1e308"), 0.5, "5", None]
PATTERNS = ["^(a+)+$", "[", "\\", "(?=x)", "\\p{L}+", "^[a-z]{1000000}$", "a{2,1}", "(",
            "x" * 5000, "^\\d{3}-\\d{4}$", "[^]", "\\u0000"]
FORMATS = ["date-time", "date", "time", "uuid", "email", "uri", "bogus", "", 5]
TYPES = ["object", "array", "string", "number", "integer", "boolean", "null", ["string", "null"],
         ["integer", "string", "array"], "bogus", 5, None, [], "Object"]


def schema(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 3 or r < 0.15:
        return rng.choice([{}, True, False, {"type": rng.choice(TYPES)},
                           {"type": "string", rng.choice(["minLength", "maxLength"]):
                            rng.choice(BOUNDS)},
                           {"enum": rng.choice([[], ["a", 1, None], ["x"] * 1000, "a", None])},
                           {"const": rng.choice(INTERESTING[:12])}])
    kind = rng.choice(["object", "array", "string", "number", "integer", "combo", "ref",
                       "chain", "enum"])
    s: dict[str, Any] = {}
    if kind == "object":
        props = {rng.choice(["a", "b", "", "x" * 200, "$ref", "😀", "a\"b"]):
                 schema(rng, depth + 1) for _ in range(rng.randint(0, 4))}
        s = {"type": "object", "properties": props}
        if rng.random() < 0.6:
            s["required"] = rng.choice([list(props), ["missing"], [5], "a", [], list(props) * 3])
        if rng.random() < 0.3:
            s["additionalProperties"] = rng.choice([True, False, schema(rng, depth + 1), 5])
        for k in ("minProperties", "maxProperties"):
            if rng.random() < 0.2:
                s[k] = rng.choice(BOUNDS)
    elif kind == "array":
        s = {"type": "array"}
        if rng.random() < 0.8:
            s["items"] = rng.choice([{}, schema(rng, depth + 1), True, False,
                                     [schema(rng, depth + 1)], None])
        if rng.random() < 0.3:
            s["prefixItems"] = [schema(rng, depth + 1) for _ in range(rng.randint(0, 3))]
        for k in ("minItems", "maxItems"):
            if rng.random() < 0.5:
                s[k] = rng.choice(BOUNDS)
        if rng.random() < 0.1:
            s["uniqueItems"] = True
    elif kind == "string":
        s = {"type": "string"}
        for k in ("minLength", "maxLength"):
            if rng.random() < 0.5:
                s[k] = rng.choice(BOUNDS)
        if rng.random() < 0.3:
            s["pattern"] = rng.choice(PATTERNS)
        if rng.random() < 0.3:
            s["format"] = rng.choice(FORMATS)
    elif kind in ("number", "integer"):
        s = {"type": kind}
        for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
            if rng.random() < 0.35:
                s[k] = rng.choice(BOUNDS + [Raw("-1e308"), -2**63, Raw("-0")])
    elif kind == "combo":
        key = rng.choice(["anyOf", "oneOf", "allOf", "not"])
        s = {key: schema(rng, depth + 1) if key == "not" else
             [schema(rng, depth + 1) for _ in range(rng.randint(0, 3))]}
    elif kind == "ref":
        s = {"$defs": {"a": schema(rng, depth + 1), "self": {"$ref": "#/$defs/self"}},
             "$ref": rng.choice(["#/$defs/a", "#/$defs/self", "#/definitions/a", "#", "#/",
                                 "http://127.0.0.1:1/x.json", "#/$defs/missing", "", 5])}
    elif kind == "chain":  # deep nesting: the converter recurses per level
        return _chain(rng.choice([50, 300, 1000]), rng)
    else:
        s = {"enum": rng.choice([[rng.choice(INTERESTING[:20]) for _ in range(5)],
                                 [str(i) for i in range(5000)], []])}
    if rng.random() < 0.1:
        s["description"] = rng.choice(STRINGS)
    return s


def bomb_schema(rng: random.Random) -> Any:
    """The shapes the issue names: repetition bounds in the millions, spelt out literally."""
    n = rng.choice([10**6, 10**7, 2**31, 2**63, Raw("9" * 400), Raw("1e308")])
    return rng.choice([
        {"type": "string", "minLength": n}, {"type": "string", "maxLength": n},
        {"type": "array", "items": {"type": "integer"}, "minItems": n},
        {"type": "array", "items": {}, "maxItems": n},
        {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string",
                                                                            "minLength": n}}}},
    ])


# ---------------------------------------------------------------------------------------------
# Mutations of a decoded body


def _paths(value: Any, path: tuple[Any, ...] = (), depth: int = 0) -> list[tuple[Any, ...]]:
    out = [path]
    if depth > 6:
        return out
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, path + (k,), depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value[:20]):
            out += _paths(v, path + (i,), depth + 1)
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


def _set(root: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    parent = _get(root, path[:-1])
    parent[path[-1]] = new
    return root


FIELD_NAMES = ["model", "name", "prompt", "suffix", "system", "template", "context", "stream",
               "raw", "format", "keep_alive", "images", "options", "think", "messages", "tools",
               "tool_choice", "truncate", "shift", "logprobs", "top_logprobs", "input",
               "dimensions", "source", "destination", "from", "files", "adapters", "parameters",
               "license", "quantize", "insecure", "verbose", "_debug_render_only", "unknown"]


def special(rng: random.Random, key: str) -> Any:
    """A value aimed at what a field means, not only at its JSON type."""
    if key == "format":
        return rng.choice([schema(rng), schema(rng), bomb_schema(rng), "json", "JSON", "",
                           "xml", 5, [], {"type": "array", "items": {}}])
    if key == "keep_alive":
        return rng.choice(KEEP_ALIVES)
    if key == "think":
        return rng.choice(THINKS)
    if key == "context":
        return rng.choice(CONTEXTS)
    if key == "images":
        return [rng.choice(IMAGES) for _ in range(rng.randint(0, 3))]
    if key in ("template", "system", "prompt", "suffix"):
        return rng.choice(TEMPLATES + STRINGS[:8])
    if key == "options":
        names = list(SPECS) + sorted(DEPRECATED)[:3] + ["bogus", ""]
        opts: dict[str, Any] = {"num_predict": 2}
        for name in rng.sample(names, rng.randint(1, 3)):
            opts[name] = rng.choice(option_values(name) if name in SPECS else INTERESTING)
        return opts
    if key == "tools":
        return [tool(rng) for _ in range(rng.randint(0, 3))]
    if key == "top_logprobs":
        return rng.choice(NUMBERS + [20, 21])
    if key == "messages":
        return [message(rng) for _ in range(rng.randint(0, 3))]
    return rng.choice(INTERESTING)


def tool(rng: random.Random) -> Any:
    fn: dict[str, Any] = {
        "name": rng.choice(["get_weather", "", "x" * 300, "a b", "😀", 5, None]),
        "description": rng.choice(["d", "", "x" * 10_000]),
        "parameters": rng.choice([schema(rng), bomb_schema(rng),
                                  {"type": "object", "properties": {}}])}
    if rng.random() < 0.1:
        return rng.choice([{}, {"type": "function"}, {"function": 5}, [], "tool", None])
    return {"type": rng.choice(["function", "function", "", "bogus", 5]), "function": fn}


def message(rng: random.Random) -> Any:
    roles: list[Any] = ["user", "assistant", "system", "tool", "", "USER", "bogus", None, 5]
    contents: list[Any] = ["hi", "", None, 5, "x" * 50_000, *TEMPLATES[:4]]
    msg: dict[str, Any] = {"role": rng.choice(roles), "content": rng.choice(contents)}
    extra = rng.random()
    if extra < 0.2:
        msg["images"] = [rng.choice(IMAGES)]
    elif extra < 0.4:
        msg["tool_calls"] = rng.choice([
            [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
            [{"function": {"name": 5, "arguments": "not an object"}}], [{}], [None], "x",
            [{"function": {"name": "f", "arguments": deep_object(200)}}]])
    elif extra < 0.5:
        msg["thinking"] = rng.choice(["t", "x" * 10_000, 5])
    elif extra < 0.6:
        msg[rng.choice(["tool_name", "tool_call_id"])] = rng.choice(INTERESTING)
    return msg


def mutate_json(rng: random.Random, body: Any) -> Any:
    """1-3 structural mutations of a decoded body."""
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        paths = _paths(body)
        if op < 0.35 and isinstance(body, dict):  # a known field gets a value aimed at it
            key = rng.choice(list(body) + FIELD_NAMES)
            body[key] = special(rng, key)
        elif op < 0.65:  # any node gets an interesting value
            path = rng.choice(paths)
            body = _set(body, path, rng.choice(INTERESTING))
        elif op < 0.75:  # drop a key
            dicts = [p for p in paths if isinstance(_get(body, p), dict) and _get(body, p)]
            if dicts:
                d = _get(body, rng.choice(dicts))
                del d[rng.choice(list(d))]
        elif op < 0.85:  # wrap a node
            path = rng.choice(paths)
            node = _get(body, path)
            body = _set(body, path, rng.choice([[node], {"x": node}, {"": node}]))
        elif op < 0.92 and isinstance(body, dict) and body:  # duplicate a key
            key = rng.choice(list(body))
            pairs = list(body.items())
            pairs.insert(rng.randint(0, len(pairs)), (key, rng.choice(INTERESTING)))
            body = Dup(pairs)
            break
        else:  # the body itself is not an object
            body = rng.choice(INTERESTING)
            break
    return body


flip = _loop.byte_mutator(b'{}[]":,0123456789eE+-.\\nultrfas \x00\xff')


# ---------------------------------------------------------------------------------------------
# The server's facts and per-server setup

# The models smoltools and smolthink take tests/templates.py's Qwen 2.5 tools template and
# <think> template (as tests/e2e/test_tools_thinking_e2e.py does): with them, tool schemas become
# grammars and format with thinking takes the two-pass path.


@dataclass
class Facts:
    manifest: dict[str, Any]
    config: str
    model: str
    model_size: int
    port: int


_FACTS: dict[tuple[int, int], Facts] = {}


def facts(target: Target) -> Facts:
    key = (target.port, target.starts)
    if key in _FACTS:
        return _FACTS[key]
    conn = target.request("GET", f"/v2/library/{M}/manifests/latest")
    assert conn.replies and conn.replies[0].status == 200, (conn.end, conn.detail)
    manifest = json.loads(conn.replies[0].body)
    layer = next(x for x in manifest["layers"] if x["mediaType"].endswith(".model"))
    for name, body in (("smoltools", {"model": "smoltools", "from": M, "template": TOOLS_TEMPLATE,
                                      "stream": False}),
                       ("smolthink", {"model": "smolthink", "from": M, "template": THINK_TEMPLATE,
                                      "stream": False})):
        c = target.request("POST", "/api/create", json.dumps(body).encode())
        assert c.replies and c.replies[0].status == 200, (name, c.end, c.detail, c.replies)
    # Pull and push against this server itself: it serves fuzz/smol as a registry, and holds
    # 127.0.0.1:PORT/fuzz/smol, the name a pull from it stores and a push to it sends.
    for name in (f"fuzz/{M}", f"127.0.0.1:{target.port}/fuzz/{M}"):
        c = target.request("POST", "/api/copy", json.dumps(
            {"source": M, "destination": name}).encode())
        assert c.replies and c.replies[0].status == 200, (c.end, c.detail, c.replies)
    _FACTS[key] = Facts(manifest=manifest, config=manifest["config"]["digest"],
                        model=layer["digest"], model_size=layer["size"], port=target.port)
    return _FACTS[key]


def restore(target: Target) -> None:
    """Put ``smol`` back if a case deleted or replaced it (later cases rely on it)."""
    c = target.request("POST", "/api/show", json.dumps({"model": M}).encode())
    if c.replies and c.replies[0].status == 200 and b"num_predict" in c.replies[0].body:
        return
    f = facts(target)
    body = {"model": M, "files": {"model.gguf": f.model}, "stream": False,
            "parameters": {"num_predict": 4, "temperature": 0}}
    target.request("POST", "/api/create", json.dumps(body).encode())


# ---------------------------------------------------------------------------------------------
# Requests per route


def http(target: Target, method: str, path: str, body: bytes | None = None,
         headers: list[tuple[str, str]] | None = None, *, stream_lines: int = 64) -> Conn:
    """A well-framed request. The target is percent-encoded where HTTP needs it (a space, a
    non-ASCII byte) but a ``%`` stays as sent, so ``%zz`` and ``%00`` reach the router: request
    lines h11 refuses are fuzz_http's business."""
    path = quote(path, safe="/%:@+-._~?&=!$'()*,;")
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\n"
    for k, v in headers or ():
        head += f"{k}: {v}\r\n"
    if body is not None:
        if not any(k.lower() == "content-type" for k, _ in headers or ()):
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n"
    raw = head.encode("utf-8", "surrogateescape") + b"Connection: close\r\n\r\n" + (body or b"")
    return Conn(parts=[raw], requests=[(method, path)], stream_lines=stream_lines)


def seeds(route: str, f: Facts, rng: random.Random) -> list[Any]:
    """Valid bodies for a JSON route (each is 2xx as sent)."""
    opts = {"num_predict": 2, "temperature": 0}
    ask = [{"role": "user", "content": "Hi"}]
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather",
        "parameters": {"type": "object", "required": ["city"],
                       "properties": {"city": {"type": "string"}}}}}
    if route == "generate":
        return [
            {"model": M, "prompt": "Hi", "stream": False, "options": opts},
            {"model": M, "prompt": "Hi", "options": opts, "keep_alive": "5m"},
            {"model": M, "prompt": "Hi", "stream": False, "options": opts,
             "format": {"type": "object", "properties": {"a": {"type": "integer"}}}},
            {"model": M, "prompt": "Hi", "stream": False, "options": opts, "format": "json"},
            {"model": M, "prompt": "Hi", "stream": False, "options": opts, "raw": True},
            {"model": M, "prompt": "Hi", "stream": False, "options": opts, "context": [1, 2, 3],
             "system": "Be brief.", "suffix": ""},
            {"model": M, "prompt": "Hi", "stream": False, "options": opts,
             "template": "{{ .System }} {{ .Prompt }}", "logprobs": True, "top_logprobs": 2},
            {"model": "smolthink", "prompt": "Hi", "stream": False, "options": opts,
             "think": True, "format": {"type": "string"}},
            {"model": M},  # load only
        ]
    if route == "chat":
        return [
            {"model": M, "messages": ask, "stream": False, "options": opts},
            {"model": M, "messages": ask, "options": opts, "format": {"type": "object"}},
            {"model": "smoltools", "messages": ask, "stream": False, "options": opts,
             "tools": [weather], "tool_choice": "required"},
            {"model": "smoltools", "messages": ask + [
                {"role": "assistant", "tool_calls": [{"function": {
                    "name": "get_weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": "sunny", "tool_name": "get_weather"}],
             "tools": [weather], "stream": False, "options": opts},
            {"model": "smolthink", "messages": ask, "stream": False, "options": opts,
             "think": True},
            {"model": M, "messages": [], "keep_alive": "1m"},
        ]
    if route == "embed":
        return [{"model": M, "input": ["a", "b"], "dimensions": 8},
                {"model": M, "input": "hello", "truncate": False, "options": {"num_ctx": 64}}]
    if route == "embeddings":
        return [{"model": M, "prompt": "hello"}]
    if route == "create":
        n = rng.randrange(1000)
        return [
            {"model": f"fuzz-c{n}", "from": M, "system": "s", "stream": False,
             "parameters": {"num_predict": 3, "stop": ["x"]}},
            {"model": f"fuzz-c{n}", "files": {"model.gguf": f.model}, "stream": False,
             "template": "{{ .Prompt }}", "license": ["MIT"],
             "messages": [{"role": "user", "content": "a"}]},
            {"model": f"fuzz-c{n}", "from": M},
        ]
    if route in ("pull", "push"):
        return [{"model": f"127.0.0.1:{f.port}/fuzz/{M}", "insecure": True, "stream": False},
                {"model": f"127.0.0.1:{f.port}/fuzz/{M}", "insecure": True}]
    if route == "show":
        return [{"model": M}, {"model": M, "verbose": True}, {"name": "smoltools", "system": "x"}]
    oa_tool = weather
    an_tool = {"name": "get_weather", "description": "Get the weather",
               "input_schema": weather["function"]["parameters"]}  # type: ignore[index]
    if route == "openai_chat":
        return [
            {"model": M, "messages": ask, "max_tokens": 2, "temperature": 0},
            {"model": M, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Hi"}]}], "max_tokens": 2, "stream": True,
             "stream_options": {"include_usage": True}},
            {"model": "smoltools", "messages": ask, "tools": [oa_tool], "max_tokens": 2,
             "tool_choice": "required"},
            {"model": M, "messages": ask, "max_tokens": 2,
             "response_format": {"type": "json_schema", "json_schema": {
                 "name": "x", "schema": {"type": "object"}}}},
            {"model": "smolthink", "messages": ask, "max_tokens": 2, "reasoning_effort": "low"},
        ]
    if route == "openai_completions":
        return [{"model": M, "prompt": "Hi", "max_tokens": 2},
                {"model": M, "prompt": "Hi", "max_tokens": 2, "stream": True, "stop": ["x"]}]
    if route == "openai_embeddings":
        return [{"model": M, "input": ["a", "b"], "dimensions": 8},
                {"model": M, "input": "a", "encoding_format": "base64"}]
    if route == "openai_responses":
        return [{"model": M, "input": "Hi", "max_output_tokens": 2},
                {"model": M, "input": [{"role": "user", "content": "Hi"}], "stream": True,
                 "instructions": "Be brief.", "max_output_tokens": 2}]
    if route in ("anthropic_messages", "anthropic_count_tokens"):
        return [{"model": M, "max_tokens": 2, "messages": ask, "system": "Be brief."},
                {"model": M, "max_tokens": 2, "messages": ask, "stream": True},
                {"model": "smoltools", "max_tokens": 2, "messages": ask, "tools": [an_tool],
                 "tool_choice": {"type": "any"}},
                {"model": "smolthink", "max_tokens": 2, "messages": ask,
                 "thinking": {"type": "enabled", "budget_tokens": 100}}]
    if route == "copy":
        return [{"source": M, "destination": f"fuzz-copy{rng.randrange(100)}"}]
    if route == "delete":
        return [{"model": f"fuzz-copy{rng.randrange(100)}"}, {"name": "fuzz-nope"}]
    raise KeyError(route)


JSON_ROUTES = {"generate": ("POST", "/api/generate"), "chat": ("POST", "/api/chat"),
               "embed": ("POST", "/api/embed"), "embeddings": ("POST", "/api/embeddings"),
               "create": ("POST", "/api/create"), "pull": ("POST", "/api/pull"),
               "push": ("POST", "/api/push"), "show": ("POST", "/api/show"),
               "copy": ("POST", "/api/copy"), "delete": ("DELETE", "/api/delete"),
               "openai_chat": ("POST", "/v1/chat/completions"),
               "openai_completions": ("POST", "/v1/completions"),
               "openai_embeddings": ("POST", "/v1/embeddings"),
               "openai_responses": ("POST", "/v1/responses"),
               "anthropic_messages": ("POST", "/v1/messages"),
               "anthropic_count_tokens": ("POST", "/v1/messages/count_tokens")}
# The front doors whose length is ``max_tokens`` / ``max_output_tokens``, not num_predict.
COMPAT_GENERATING = {"openai_chat", "openai_completions", "openai_responses",
                     "anthropic_messages"}


def _bounded(body: Any, route: str = "generate") -> Any:
    """Keep generation short: a body whose num_predict is not a small count is streamed and
    read for at most 64 lines (the client then hangs up, which cancels the generation)."""
    if not isinstance(body, dict):
        return body
    if route in COMPAT_GENERATING:
        n = body.get("max_output_tokens" if route == "openai_responses" else "max_tokens")
        if not (isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 4):
            body["stream"] = True
        return body
    opts = body.get("options")
    n = opts.get("num_predict") if isinstance(opts, dict) else None
    if not (isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 4) \
            and body.get("stream") is False:
        body["stream"] = True
    return body


def json_case(rng: random.Random, target: Target, route: str) -> Case:
    f = facts(target)
    method, path = JSON_ROUTES[route]
    body = json.loads(json.dumps(rng.choice(seeds(route, f, rng))))
    name = route
    r = rng.random()
    if r < 0.1:
        data = dump(body).encode()  # the seed as is
        name += ":seed"
    elif r < 0.2:
        data = flip(rng, dump(body).encode())
        name += ":bytes"
    else:
        body = mutate_json(rng, body)
        if route in ("generate", "chat") or route in COMPAT_GENERATING:
            body = _bounded(body, route)
        data = dump(body).encode("utf-8", "surrogatepass")
        name += ":json"
    probes = (("GET", "/api/ps", None),)
    after = restore if route in ("delete", "create", "copy", "pull", "push") else None
    return Case(name=name, conns=[http(target, method, path, data)], probes=probes, after=after)


# -- routes without JSON bodies -----------------------------------------------------------------


QUERY_VALUES = ["", "%", "%zz", "%00", "a+b", "9" * 400, "-1", "../x", "\u00e9", "a" * 5000,
                "sha256:" + "0" * 64]


def _query(rng: random.Random, keys: list[str]) -> str:
    if rng.random() < 0.4:
        return ""
    pairs = [f"{rng.choice(keys)}={rng.choice(QUERY_VALUES)}" for _ in range(rng.randint(1, 4))]
    return "?" + "&".join(pairs)


def simple_case(rng: random.Random, target: Target, route: str) -> Case:
    path = {"root": "/", "version": "/api/version", "tags": "/api/tags", "ps": "/api/ps",
            "registry_base": "/v2/", "openai_models": "/v1/models", "ui": "/ui",
            "websocket": "/api/ws", "metrics": "/metrics",
            "openai_model": rng.choice([f"/v1/models/{M}", f"/v1/models/{M}:latest",
                                        "/v1/models/nope", "/v1/models/%00",
                                        "/v1/models/" + "a" * 300])}[route]
    method = ("GET" if route in ("ps", "openai_models", "openai_model", "websocket")
              else rng.choice(["GET", "GET", "HEAD"]))
    body = None
    if rng.random() < 0.2:  # a body on a GET is read and ignored
        body = dump(rng.choice(INTERESTING)).encode("utf-8", "surrogatepass")
    return Case(name=route, conns=[http(target, method, path + _query(
        rng, ["x", "model", "n", "last", ""]), body)])


SEGMENTS = ["", "..", "%2e%2e", ".", "%00", "a" * 300, "A", "-x", "x:y", "x@y", "%ZZ", "%",
            "%252e", "\u00e9", "a%2Fb", "library", M, "sha256:" + "0" * 64, "sha256:zz", "+",
            "sha256-" + "0" * 64, "latest", "LATEST", "_", "x" * 129]


def _digests(f: Facts, rng: random.Random) -> str:
    return rng.choice([f.config, f.model, "sha256:" + "0" * 64, "sha256:" + "0" * 63,
                       "sha256:" + "G" * 64, "sha512:" + "0" * 128, "sha256%3A" + f.config[7:],
                       "SHA256:" + f.config[7:], "sha256:" + f.config[7:].upper(), ""])


def blob_case(rng: random.Random, target: Target) -> Case:
    """/api/blobs/:digest: HEAD, and POST with a body whose digest may not match."""
    f = facts(target)
    data = rng.randbytes(rng.choice([0, 1, 100, 70_000]))
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    digest = good if rng.random() < 0.5 else rng.choice([_digests(f, rng), rng.choice(SEGMENTS)])
    if rng.random() < 0.3:
        return Case(name="blob:head", conns=[http(target, "HEAD", f"/api/blobs/{digest}")])
    return Case(name="blob:post", conns=[http(target, "POST", f"/api/blobs/{digest}", data)])


def registry_blob_case(rng: random.Random, target: Target) -> Case:
    f = facts(target)
    ns, model = rng.choice([("library", M), ("fuzz", M), (rng.choice(SEGMENTS), M),
                            ("library", rng.choice(SEGMENTS))])
    digest = rng.choice([f.config] * 3 + [_digests(f, rng), rng.choice(SEGMENTS)])
    headers = []
    if rng.random() < 0.6:
        size = rng.choice([f.model_size, 400, 0])
        ends = [0, 1, size - 1, size, size + 1, 2**63, 2**64, 10**30, -1]
        headers.append(("Range", rng.choice([
            f"bytes={rng.choice(ends)}-{rng.choice(ends)}", f"bytes=-{rng.choice(ends)}",
            f"bytes={rng.choice(ends)}-", "bytes=" + "9" * 400 + "-", "bytes=0-1,2-3",
            "bytes=", "items=0-1", "bytes=-0"])))
    method = rng.choice(["GET", "GET", "HEAD"])
    if digest == f.model and method == "GET" and not headers:
        method = "HEAD"  # a 98 MB download per case would only measure the disk
    return Case(name="registry_blob", conns=[http(
        target, method, f"/v2/{ns}/{model}/blobs/{digest}", headers=headers)])


def manifest_case(rng: random.Random, target: Target) -> Case:
    """GET/HEAD a manifest by tag or digest, or PUT a mutated manifest and then use the model."""
    f = facts(target)
    if rng.random() < 0.35:
        ref = rng.choice(["latest", "LATEST", "nope", f.config, rng.choice(SEGMENTS),
                          "sha256:" + "0" * 64])
        ns, model = rng.choice([("library", M), (rng.choice(SEGMENTS), M),
                                ("library", rng.choice(SEGMENTS))])
        return Case(name="registry_manifest:get", conns=[http(
            target, rng.choice(["GET", "HEAD"]), f"/v2/{ns}/{model}/manifests/{ref}")])
    manifest = json.loads(json.dumps(f.manifest))
    n = rng.randrange(10_000)
    if rng.random() < 0.8:
        op = rng.random()
        layers = manifest.get("layers", [])
        if op < 0.2 and layers:  # drop layers (the model layer among them)
            manifest["layers"] = [x for x in layers if rng.random() < 0.5]
        elif op < 0.35:
            manifest["config"] = rng.choice([None, {}, {"digest": f.model, "size": 1,
                                                        "mediaType": "x"}, 5])
        elif op < 0.5 and layers:
            layer = rng.choice(layers)
            layer[rng.choice(["size", "digest", "mediaType"])] = rng.choice(
                INTERESTING + [f.config, "sha256:" + "0" * 64])
        elif op < 0.6:
            manifest["layers"] = [dict(layers[0]) for _ in range(rng.choice([2, 1000]))] \
                if layers else []
        else:
            manifest = mutate_json(rng, manifest)
    body = dump(manifest).encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:
        body = flip(rng, body)
    tag = rng.choice(["latest", "v1", "x" * 128, "x" * 129, "sha256:" + "0" * 64, "bad tag", ""])
    path = f"/v2/fuzz/m{n}/manifests/{tag}"

    def conns() -> Iterator[Conn]:
        put = http(target, "PUT", path, body,
                   [("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")])
        yield put
        if put.replies and put.replies[0].status == 201:
            # What was stored must be usable or refused by every reader, never a 500.
            yield http(target, "POST", "/api/show", json.dumps({"model": f"fuzz/m{n}:{tag}"})
                       .encode())
            yield http(target, "POST", "/api/generate", json.dumps({
                "model": f"fuzz/m{n}:{tag}", "prompt": "Hi", "stream": False,
                "options": {"num_predict": 1}}).encode())

    return Case(name="registry_manifest:put", conns=conns(),
                probes=(("GET", "/api/tags", None), ("GET", "/api/ps", None)))


def upload_case(rng: random.Random, target: Target) -> Case:
    """An upload session: start (or monolithic / mount), PATCH chunks, PUT ?digest=, GET,
    DELETE."""
    f = facts(target)
    data = rng.randbytes(rng.choice([0, 10, 1000, 100_000]))
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    ns = rng.choice(["fuzz", "fuzz", rng.choice(SEGMENTS)])
    base = f"/v2/{ns}/up/blobs/uploads/"

    def digest() -> str:
        return good if rng.random() < 0.6 else _digests(f, rng)

    def conns() -> Iterator[Conn]:
        shape = rng.random()
        if shape < 0.2:
            yield http(target, "POST", base + f"?digest={digest()}", data)
            return
        if shape < 0.3:
            yield http(target, "POST", base + f"?mount={digest()}&from={rng.choice(SEGMENTS)}",
                       b"")
            return
        start = http(target, "POST", base.rstrip("/") if rng.random() < 0.2 else base, b"")
        yield start
        location = start.replies[0].header("location") if start.replies else None
        if not location:
            return
        if rng.random() < 0.2:  # someone else's or a made-up session
            location = location.rsplit("/", 1)[0] + "/" + rng.choice(
                ["0" * 32, "x", "", "%00", "../" + "0" * 32, "a" * 5000])
        sent = 0
        for _ in range(rng.randint(0, 3)):
            piece = data[sent:sent + rng.randint(0, len(data) + 1)]
            headers = []
            if rng.random() < 0.7:
                first = sent if rng.random() < 0.7 else rng.choice([sent + 1, 0, -1, 2**64])
                headers.append(("Content-Range", rng.choice([
                    f"{first}-{first + len(piece) - 1}", f"bytes {first}-", "garbage", "-",
                    f"{'9' * 400}-1"])))
            c = http(target, "PATCH", location, piece, headers)
            yield c
            if c.replies and c.replies[0].status == 202:
                sent += len(piece)
        if rng.random() < 0.2:
            yield http(target, rng.choice(["GET", "DELETE"]), location)
        sep = "&" if "?" in location else "?"
        yield http(target, "PUT", location + f"{sep}digest={digest()}", data[sent:])

    return Case(name="registry_upload", conns=conns())


WS_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]


def websocket_case(rng: random.Random, target: Target) -> Case:
    """Upgrade requests with a header missing or mangled: a 400 (or the 101 when intact,
    which the reader sees as a non-2xx it accepts only without a JSON error)."""
    headers = list(WS_HEADERS)
    if rng.random() < 0.8:
        i = rng.randrange(len(headers))
        name, _ = headers[i]
        headers[i] = (name, rng.choice(["", "x", "websocket, h2c", "99", "%00", "a" * 300]))
        if rng.random() < 0.5:
            del headers[i]
    return Case(name="websocket handshake",
                conns=[http(target, "GET", "/api/ws" + _query(rng, ["x"]), None, headers)])


def wrong_method_case(rng: random.Random, target: Target) -> Case:
    """Routes with methods they do not take (405 text/plain), and unknown paths (404)."""
    method = rng.choice(["GET", "PUT", "PATCH", "DELETE", "POST", "OPTIONS", "TRACE", "HEAD"])
    path = rng.choice([p for p, _, _ in ROUTES] + ["/api", "/api/", "/api/nope", "/v2/a/b/c/d/e",
                                                   "/api/generate/x", "/API/TAGS", "/%61pi/tags"])
    path = path.replace(":namespace", "fuzz").replace(":model", M).replace(
        ":reference", "latest").replace(":digest", "sha256:" + "0" * 64).replace(
        ":upload", "0" * 32).replace(":model", M)
    body = b"{}" if method in ("POST", "PUT", "PATCH", "DELETE") else None
    return Case(name="wrong method/path", conns=[http(target, method, path, body)])


def big_body_case(rng: random.Random, target: Target) -> Case:
    """A large JSON body on a small route (the issue: 63 MB to /api/show)."""
    size = rng.choice([5 << 20, 20 << 20, 70 << 20])
    route = rng.choice(["show", "generate", "chat", "copy"])
    method, path = JSON_ROUTES[route]
    body = b'{"model":"' + M.encode() + b'","x":"' + b"a" * size + b'"}'
    return Case(name=f"big body {size >> 20} MB to {route}",
                conns=[http(target, method, path, body)])


# ---------------------------------------------------------------------------------------------
# Cases


ROUTE_CASES = {
    "root": 1, "version": 1, "tags": 2, "ps": 1, "registry_base": 1,
    "generate": 14, "chat": 14, "embed": 4, "embeddings": 2, "create": 6, "pull": 2, "push": 2,
    "show": 5, "copy": 3, "delete": 3, "blob": 4, "registry_manifest": 8,
    "registry_upload_start": 4, "registry_upload": 4, "registry_blob": 5,
    "openai_chat": 8, "openai_completions": 3, "openai_embeddings": 3, "openai_models": 1,
    "openai_model": 2, "openai_responses": 4, "anthropic_messages": 6,
    "anthropic_count_tokens": 2, "ui": 1, "websocket": 2, "metrics": 1,
}
missing = {handler for _, _, handler in ROUTES} - set(ROUTE_CASES)
assert not missing, f"routes without a fuzz case: {missing}"


def curated(target: Target) -> list[tuple[str, Any, str, str | None]]:
    """One case per class the issue names, run first: (route, body, name)."""
    gen = {"model": M, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}

    def g(**kw: Any) -> Any:
        return {**gen, **kw}

    # (route, body, name, expected class or None when either answer is right)
    return [
        ("generate", g(), "seed generate", "2xx"),
        # Go decodes a number keep_alive as float64 and converts it with int(): out of range
        # that is undefined, not an error, so refusing or saturating to "forever" are both
        # right; what must hold is the probe after it (/api/ps was a 500 for good).
        ("generate", g(keep_alive=9223372036854775807), "keep_alive 2**63-1", None),
        ("generate", g(keep_alive=Raw("1e308")), "keep_alive 1e308", None),
        ("generate", g(keep_alive="99999999999h"), 'keep_alive "99999999999h"', "4xx"),
        ("generate", g(context=[2**40]), "context token out of int32", "4xx"),
        ("generate", g(context=[49152, 70000]), "context tokens out of the vocabulary", "4xx"),
        ("generate", g(options={"num_predict": Raw("9" * 400)}, stream=True),
         "num_predict with 400 digits", "4xx"),
        ("generate", g(options={"num_predict": 2, "num_ctx": Raw("1e308")}), "num_ctx 1e308",
         None),
        ("generate", g(options={"num_predict": 2, "temperature": Raw("1e999")}),
         "temperature 1e999", "4xx"),
        ("generate", g(options={"num_predict": 2, "seed": 2**64}), "seed 2**64", None),
        ("generate", g(format={"type": "array", "items": {}}), "format array of {}", "2xx"),
        ("generate", g(format=_chain(300)), "format 300 levels deep", None),
        ("generate", g(format={"type": "string", "minLength": 10**7}), "format minLength 1e7",
         "4xx"),
        ("generate", g(format={"type": "integer", "minimum": Raw("1e308")}),
         "format minimum 1e308", None),
        ("generate", g(images=["!!!"]), "image with bad base64", "4xx"),
        ("generate", g(template='{{ printf "%0999999999d" 1 }}'), "template printf width 1e9",
         None),
        ("generate", g(prompt=Raw('"\\ud800"')), "lone surrogate prompt", "2xx"),
        ("generate", deep_array(100_000), "100000-deep array body", "4xx"),
        ("chat", {"model": "smoltools", "messages": [{"role": "user", "content": "Hi"}],
                  "stream": False, "options": {"num_predict": 2}, "tool_choice": "required",
                  "tools": [{"type": "function", "function": {"name": "f", "parameters": {
                      "type": "array", "items": {}, "minItems": 10**6}}}]},
         "tool parameters minItems 1e6", "4xx"),
        ("embed", {"model": M, "input": "x", "dimensions": 2**63}, "embed dimensions 2**63",
         None),
        ("show", {"model": M, "verbose": Raw("1e308")}, "show verbose 1e308", "4xx"),
        ("create", {"model": "fuzz-p", "from": M, "parameters": {"num_ctx": Raw("9" * 400)},
                    "stream": False}, "create parameter with 400 digits", "4xx"),
    ]


def _chain(n: int, rng: random.Random | None = None) -> Raw:
    """A schema ``n`` levels deep, as text (deeper than this module's own recursion)."""
    head, tail = [], []
    for _ in range(n):
        if rng is not None and rng.random() < 0.5:
            head.append('{"type":"array","minItems":1,"items":')
            tail.append("}")
        else:
            head.append('{"type":"object","required":["a"],"properties":{"a":')
            tail.append("}}")
    return Raw("".join(head) + '{"type":"string"}' + "".join(reversed(tail)))


def make_case(rng: random.Random, target: Target, index: int) -> Case:
    facts(target)  # the per-server setup (smoltools, smolthink), again after a restart
    fixed = curated(target)
    if index < len(fixed):
        route, body, name, expect = fixed[index]
        method, path = JSON_ROUTES[route]
        data = dump(body).encode("utf-8", "surrogatepass")
        return Case(name=f"curated: {name}", conns=[http(target, method, path, data)],
                    probes=(("GET", "/api/ps", None),), expect=expect)
    if index == len(fixed):
        return Case(name="curated: manifest without a model layer", conns=_no_model_layer(target),
                    probes=(("GET", "/api/tags", None),), expect="4xx")
    if rng.random() < 0.01:
        return big_body_case(rng, target)
    route = rng.choices(list(ROUTE_CASES), weights=list(ROUTE_CASES.values()))[0]
    if rng.random() < 0.03:
        return wrong_method_case(rng, target)
    if route in JSON_ROUTES:
        return json_case(rng, target, route)
    if route == "websocket":
        return websocket_case(rng, target)
    if route in ("root", "version", "tags", "ps", "registry_base", "openai_models",
                 "openai_model", "ui", "metrics"):
        return simple_case(rng, target, route)
    if route == "blob":
        return blob_case(rng, target)
    if route == "registry_blob":
        return registry_blob_case(rng, target)
    if route == "registry_manifest":
        return manifest_case(rng, target)
    return upload_case(rng, target)


def _no_model_layer(target: Target) -> Iterator[Conn]:
    f = facts(target)
    manifest = dict(f.manifest, layers=[x for x in f.manifest["layers"]
                                        if not x["mediaType"].endswith(".model")])
    put = http(target, "PUT", "/v2/fuzz/nomodel/manifests/latest", json.dumps(manifest).encode(),
               [("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")])
    yield put
    yield http(target, "POST", "/api/show", b'{"model":"fuzz/nomodel"}')


def curated_count(target: Target) -> int:
    return len(curated(target)) + 1


def main(argv: list[str] | None = None) -> None:
    _live.cli("fuzz_handlers", make_case, argv)


if __name__ == "__main__":
    main()
