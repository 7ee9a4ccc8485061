"""Golden prompts for tool-calling templates, byte for byte.

Qwen 2.5 with tools, both ways a model can carry it: Ollama's library Go template (Modelfile
TEMPLATE, rendered by core/gotemplate/) and Qwen's own jinja ``chat_template`` (GGUF
``tokenizer.chat_template``, rendered by core/chat_template.py); Llama 3.1's library Go template;
and renders recorded by Ollama (``server/testdata/tools``) and llama.cpp replayed as they are.
The hand-written expectations below were derived from the template text, not from our output.
Sources, licences and digests: tests/core/data/golden_tools/NOTICE.md.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from pollama.core import chat_template, generation, gotemplate as gt, prompt
from pollama.core.requests import ChatRequest, parse_chat
from tests.templates import GOLDEN_TOOLS, golden_tools

TODAY = "2025-01-01"

WEATHER_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather",
    "description": "Get the current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The name of the city"}},
        "required": ["city"],
    }}}

# One tool round trip, as a client sends it to /api/chat after running the tool.
ROUND_TRIP: dict[str, Any] = {"model": "m", "tools": [WEATHER_TOOL], "messages": [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "tool_name": "get_weather",
     "content": '{"temperature": 18, "conditions": "cloudy"}'},
]}
# The first turn of the same chat: the model has not called the tool yet.
FIRST_TURN: dict[str, Any] = {**ROUND_TRIP, "messages": ROUND_TRIP["messages"][:2]}

# Ollama prints .Function and .Tools with Go's encoding/json: compact, api.ToolFunction field
# order (name, description, parameters), and in parameters "required" before "properties"
# (api.ToolFunctionParameters: Type, Defs, Items, Required, Properties; empty ones omitted).
# Tool-call arguments (api.ToolCallFunctionArguments) print the same way.
GO_FUNCTION = ('{"name":"get_weather","description":"Get the current weather for a city",'
               '"parameters":{"type":"object","required":["city"],"properties":{"city":'
               '{"type":"string","description":"The name of the city"}}}}')
GO_TOOL = '{"type":"function","function":' + GO_FUNCTION + '}'
GO_ARGUMENTS = '{"city":"Paris"}'

# HF templates print with ``tojson``, i.e. Python's json.dumps: ", " and ": " separators and the
# keys in the order the request sent them.
PY_TOOL = ('{"type": "function", "function": {"name": "get_weather", "description": '
           '"Get the current weather for a city", "parameters": {"type": "object", '
           '"properties": {"city": {"type": "string", "description": "The name of the city"}}, '
           '"required": ["city"]}}}')
PY_ARGUMENTS = '{"city": "Paris"}'

QWEN_TOOLS_PREAMBLE = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n")
QWEN_TOOLS_POSTAMBLE = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n')

QWEN25_GO_EXPECTED = (
    "<|im_start|>system\nYou are a helpful assistant."
    + QWEN_TOOLS_PREAMBLE
    # The template writes the envelope itself and prints only .Function as JSON.
    + '{"type": "function", "function": ' + GO_FUNCTION + "}"
    + QWEN_TOOLS_POSTAMBLE
    # The system message is in .Messages too; the template skips it there.
    + "<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n"
    + "<|im_start|>assistant\n<tool_call>\n"
    + '{"name": "get_weather", "arguments": ' + GO_ARGUMENTS + "}\n</tool_call><|im_end|>\n"
    + "<|im_start|>user\n<tool_response>\n"
    + '{"temperature": 18, "conditions": "cloudy"}\n</tool_response><|im_end|>\n'
    + "<|im_start|>assistant\n"
)

QWEN25_JINJA_EXPECTED = (
    "<|im_start|>system\nYou are a helpful assistant."
    + QWEN_TOOLS_PREAMBLE
    + PY_TOOL
    + QWEN_TOOLS_POSTAMBLE
    + "<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n"
    + "<|im_start|>assistant\n<tool_call>\n"
    + '{"name": "get_weather", "arguments": ' + PY_ARGUMENTS + "}\n</tool_call><|im_end|>\n"
    + "<|im_start|>user\n<tool_response>\n"
    + '{"temperature": 18, "conditions": "cloudy"}\n</tool_response><|im_end|>\n'
    + "<|im_start|>assistant\n"
)

LLAMA31_SYSTEM = (
    "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.\n\n"
    "Cutting Knowledge Date: December 2023\n\n"
    # "orginal" is in Ollama's template.
    "When you receive a tool call response, use the output to format an answer to the orginal "
    "user question.\n\nYou are a helpful assistant with tool calling capabilities.<|eot_id|>")

# Llama 3.1 lists the tools only in the last message when it is the user's: after a tool
# result they are not repeated.
LLAMA31_ROUND_TRIP_EXPECTED = (
    LLAMA31_SYSTEM
    + "<|start_header_id|>user<|end_header_id|>\n\nWhat is the weather in Paris?<|eot_id|>"
    + "<|start_header_id|>assistant<|end_header_id|>\n\n"
    + '{"name": "get_weather", "parameters": ' + GO_ARGUMENTS + "}<|eot_id|>"
    + "<|start_header_id|>ipython<|end_header_id|>\n\n"
    + '{"temperature": 18, "conditions": "cloudy"}<|eot_id|>'
    + "<|start_header_id|>assistant<|end_header_id|>\n\n"
)

LLAMA31_FIRST_TURN_EXPECTED = (
    LLAMA31_SYSTEM
    + "<|start_header_id|>user<|end_header_id|>\n\n"
    + "Given the following functions, please respond with a JSON for a function call with its "
    + "proper arguments that best answers the given prompt.\n\n"
    + 'Respond in the format {"name": function name, "parameters": dictionary of argument name '
    + "and its value}. Do not use variables.\n\n"
    # Each tool prints whole (api.Tool's String()), one per line.
    + GO_TOOL + "\n\n"
    + "Question: What is the weather in Paris?<|eot_id|>"
    + "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


def go_model(name: str) -> prompt.ModelPrompting:
    return prompt.ModelPrompting(go_template=golden_tools(name))


def jinja_model(name: str) -> prompt.ModelPrompting:
    return prompt.ModelPrompting(chat_template=golden_tools(name), bos_token="<|endoftext|>",
                                 eos_token="<|im_end|>")


def chat(body: dict[str, Any]) -> ChatRequest:
    # Through the request parser, so the messages are what the server would render.
    return parse_chat(json.loads(json.dumps(body)))


# ---------------------------------------------------------------------------------------------
# The template texts are the published ones: an Ollama template layer's digest is the sha256 of
# its text.


@pytest.mark.parametrize("name, digest", [
    ("qwen2.5.gotmpl", "eb4402837c7829a690fa845de4d7f3fd842c2adee476d5341da8a46ea9255175"),
    ("llama3.1.gotmpl", "948af2743fc78a328dcb3b0f5a31b3d75f415840fdb699e8b1235978392ecf85"),
    ("ollama-server-tools/llama3.2.gotmpl",
     "966de95ca8a62200913e3f8bfbf84c8494536f1b94b49166851e76644e966396"),
])
def test_library_templates_match_their_layer_digest(name: str, digest: str) -> None:
    assert hashlib.sha256((GOLDEN_TOOLS / name).read_bytes()).hexdigest() == digest


# ---------------------------------------------------------------------------------------------
# Qwen 2.5 with tools


def test_qwen25_go_template_round_trip() -> None:
    req = chat(ROUND_TRIP)
    assert (generation.chat_prompt(req, go_model("qwen2.5.gotmpl"), today=TODAY)
            == QWEN25_GO_EXPECTED)
    # The engine on its own gives the same text.
    template = gt.parse(golden_tools("qwen2.5.gotmpl"))
    assert gt.render_chat(template, req.messages, tools=req.tools) == QWEN25_GO_EXPECTED


def test_qwen25_jinja_template_round_trip() -> None:
    got = generation.chat_prompt(chat(ROUND_TRIP), jinja_model("Qwen2.5-7B-Instruct.jinja"),
                             today=TODAY)
    assert got == QWEN25_JINJA_EXPECTED


def test_qwen25_go_and_jinja_differ_only_in_json_spelling() -> None:
    """Ollama's Go template was written to reproduce Qwen's jinja one. The prompts differ where
    each side serialises JSON (Go's encoding/json vs Python's json.dumps): spacing and key order
    of the tool definition and of the call's arguments. Those lines decode to the same values."""
    go_lines = QWEN25_GO_EXPECTED.split("\n")
    jinja_lines = QWEN25_JINJA_EXPECTED.split("\n")
    assert len(go_lines) == len(jinja_lines)
    differing = [(g, j) for g, j in zip(go_lines, jinja_lines) if g != j]
    assert len(differing) == 2
    for g, j in differing:
        assert json.loads(g) == json.loads(j)


def test_qwen25_without_tools() -> None:
    """Without tools both fall back to plain ChatML (the jinja one with Qwen's default system
    prompt when the chat has none; the Go one has no default)."""
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    user = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert generation.chat_prompt(chat(body), go_model("qwen2.5.gotmpl"), today=TODAY) == user
    assert generation.chat_prompt(chat(body), jinja_model("Qwen2.5-7B-Instruct.jinja"),
                              today=TODAY) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        "assistant.<|im_end|>\n" + user)


def test_qwen25_jinja_replays_llama_cpp_golden() -> None:
    """llama.cpp's recorded render of the same jinja template (four tools, three calls with
    arguments given as JSON strings, which tojson quotes again)."""
    ctx = json.loads(golden_tools("llama.cpp/tool_use.json"))
    got = chat_template.render(
        golden_tools("Qwen2.5-7B-Instruct.jinja"), ctx["messages"], tools=ctx["tools"],
        bos_token=ctx["bos_token"], eos_token=ctx["eos_token"],
        add_generation_prompt=ctx["add_generation_prompt"],
        extra={k: ctx[k] for k in ("builtin_tools", "cutting_knowledge_date", "todays_date")})
    assert got == golden_tools("llama.cpp/Qwen-Qwen2.5-7B-Instruct-tool_use.txt")


# ---------------------------------------------------------------------------------------------
# Llama 3.1 with tools


@pytest.mark.parametrize("body, expected", [
    (ROUND_TRIP, LLAMA31_ROUND_TRIP_EXPECTED),
    (FIRST_TURN, LLAMA31_FIRST_TURN_EXPECTED),
], ids=["round-trip", "first-turn"])
def test_llama31_go_template(body: dict[str, Any], expected: str) -> None:
    assert generation.chat_prompt(chat(body), go_model("llama3.1.gotmpl"), today=TODAY) == expected


# ---------------------------------------------------------------------------------------------
# Ollama's recorded renders (server/testdata/tools): the expected prompt is Ollama's own output.


@pytest.mark.parametrize("name", ["llama3.2", "mistral", "nemotron"])
def test_ollama_recorded_tool_renders(name: str) -> None:
    req = chat({"model": "m",
                "messages": json.loads(golden_tools("ollama-server-tools/messages.json")),
                "tools": json.loads(golden_tools("ollama-server-tools/tools.json"))})
    got = generation.chat_prompt(req, go_model(f"ollama-server-tools/{name}.gotmpl"), today=TODAY)
    assert got.encode() == (GOLDEN_TOOLS / "ollama-server-tools" / f"{name}.out").read_bytes()
