"""Fuzz target: Modelfile TEMPLATE text -> Go template parse -> execute in every Ollama mode.

Allowed outcomes: a string, or ``TemplateError`` (a ``PollamaError``). Anything else (another
exception, a hang, unbounded output) is a bug. Executions run with small step and output
budgets so that runaway templates fail fast. Run directly for a session (atheris if installed,
otherwise 10 s of mutated random input)::

    python fuzz/fuzz_gotemplate.py
"""

from __future__ import annotations

import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _loop  # noqa: E402  (the shared driver next to this file)

from pollama.core import gotemplate as gt  # noqa: E402
from pollama.core.errors import PollamaError  # noqa: E402
from pollama.core.requests import Message  # noqa: E402

MAX_STEPS = 20_000
MAX_OUTPUT = 1 << 16

MESSAGES = (
    Message(role="system", content="Be brief."),
    Message(role="user", content="Hi <b>&"),
    Message(role="assistant", content="", tool_calls=(
        {"id": "call_1", "function": {"index": 0, "name": "get_weather",
                                      "arguments": {"city": "Paris", "days": 3}}},)),
    Message(role="tool", content="sunny", tool_name="get_weather"),
    Message(role="user", content="Thanks", images=("aGk=",)),
)
TOOLS = ({"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string", "description": "City name"},
        "days": {"type": ["integer", "null"], "enum": [1, 2, 3]}}}}},)

SEEDS: list[bytes] = [
    b"{{ .System }} USER: {{ .Prompt }} ASSISTANT: {{ .Response }}",
    b"{{- range $i, $m := .Messages }}{{ if eq .Role \"user\" }}[{{ $i }}] {{ .Content }}"
    b"{{ else if eq .Role \"tool\" }}{{ continue }}{{ else }}{{ .Content }}{{ end }}{{ end }}",
    b"{{ if .Tools }}{{ json .Tools }}{{ range .Tools }}{{ .Function.Name }}"
    b"{{ range $k, $v := .Function.Parameters.Properties }}{{ $k }}:"
    b"{{ toTypeScriptType $v }}{{ end }}{{ end }}{{ end }}",
    b"{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Arguments }}"
    b"{{ printf \"%q %5.2f %v\" .Function.Name 3.14159 .ID }}{{ end }}{{ end }}",
    b'{{ define "t" }}<{{ . }}>{{ end }}{{ template "t" .System }}{{ block "b" 1 }}'
    b"{{ . }}{{ end }}{{/* c */}}{{- `raw` -}} x",
    b"{{ $x := 0 }}{{ range 5 }}{{ $x = . }}{{ if gt . 2 }}{{ break }}{{ end }}{{ end }}{{ $x }}"
    b"{{ with .Suffix }}<PRE>{{ $.Prompt }}<SUF>{{ . }}<MID>{{ end }}",
    b"{{ slice .Messages 1 }}{{ index .Messages 0 }}{{ len .Messages }}{{ and 1 0 }}"
    b"{{ or 0 \"x\" }}{{ not .Think }}{{ html \"<\" }}{{ js \"'\" }}{{ urlquery \"a b\" }}"
    b"{{ currentDate }}{{ yesterdayDate }}{{ .ThinkLevel }}{{ .IsThinkSet }}",
]

_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "core",
                         "data", "ollama-templates")
if os.path.isdir(_DATA_DIR):
    for _name in sorted(os.listdir(_DATA_DIR)):
        if _name.endswith(".gotmpl"):
            with open(os.path.join(_DATA_DIR, _name), "rb") as _f:
                SEEDS.append(_f.read())

_TOKENS = (
    b"{{", b"}}", b"{{-", b" -}}", b"{{ end }}", b"{{ else }}", b"{{ if ", b"{{ range ",
    b"{{ with ", b"{{ define \"x\" }}", b"{{ template \"x\" . }}", b"{{ block \"b\" . }}",
    b"{{ break }}", b"{{ continue }}", b"$x := ", b"$x = ", b"$", b".", b".Messages",
    b".Role", b".Content", b".Tools", b".Response", b"|", b"(", b")", b" ", b"\n", b"\"",
    b"`", b"'a'", b"-1", b"1.5e3", b"0x1F", b"nil", b"true", b"printf \"%v\" ", b"eq ",
    b"len ", b"index ", b"slice ", b"json ", b"/*", b"*/", b",",
)


def one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        template = gt.parse(text)
    except PollamaError as e:
        assert isinstance(e, gt.TemplateError)
        assert e.message.startswith("template error: ")
        return
    assert template.source == text
    runs = (
        lambda: template.execute({"Messages": gt.template_messages(MESSAGES), "System": "s",
                                  "Tools": gt.template_tools(TOOLS), "Prompt": "p",
                                  "Response": "", "Think": True},
                                 max_steps=MAX_STEPS, max_output=MAX_OUTPUT),
        lambda: gt.render_chat(template, MESSAGES, tools=TOOLS, think=True,
                               think_level="high", is_think_set=True,
                               max_steps=MAX_STEPS, max_output=MAX_OUTPUT),
        lambda: gt.render_chat(template, MESSAGES[1:2], max_steps=MAX_STEPS,
                               max_output=MAX_OUTPUT),
        lambda: gt.render_suffix(template, "def f(", "return 1", max_steps=MAX_STEPS,
                                 max_output=MAX_OUTPUT),
    )
    for run in runs:
        try:
            out = run()
        except PollamaError as e:
            assert isinstance(e, gt.TemplateError)
            continue
        assert isinstance(out, str)
        assert len(out) <= 4 * MAX_OUTPUT


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randint(0, len(buf))
        if op == 0 and buf:
            del buf[min(pos, len(buf) - 1):min(pos + rng.randint(1, 8), len(buf))]
        elif op == 1:
            buf[pos:pos] = rng.choice(_TOKENS)
        elif op == 2:
            buf[pos:pos] = bytes([rng.randrange(256)])
        elif buf:
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start:start + rng.randint(1, 16)]
    return bytes(buf)


HARNESS = _loop.Harness(one_input, _mutate, SEEDS, random_share=0.1, max_random=64)
random_loop = HARNESS.random_loop

if __name__ == "__main__":
    HARNESS.main()
