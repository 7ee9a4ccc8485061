"""The built-in library entries (core/library.py): smollm2 is packaged as Ollama's library
smollm2:135m is (template with tools, Apache-2.0 license, stop params, system prompt)."""

from __future__ import annotations

import json

from pollama.core import gotemplate, library, licenses, prompt, show, tools
from pollama.core.names import parse_name
from pollama.core.requests import Message

SMOL = library.SMOLLM2_135M
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string"}}}}}
MODEL = prompt.ModelPrompting(go_template=SMOL.template, system=SMOL.system)


def _render(messages: list[Message], with_tools: bool = True) -> str:
    return prompt.render(messages, MODEL, today="2025-01-01",
                         tools=[WEATHER] if with_tools else ())


def test_smollm2_layers_are_ollamas() -> None:
    assert SMOL.parameters == {"stop": ["<|im_start|>", "<|im_end|>"]}
    assert SMOL.system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    # one license layer: the Apache License 2.0 (test_licenses.py checks its bytes)
    assert SMOL.license == (licenses.APACHE_2_0,)
    assert SMOL.template is not None
    gotemplate.parse(SMOL.template)


def test_smollm2_capabilities_include_tools() -> None:
    assert show.capabilities(SMOL.template, go=True) == ["completion", "tools"]
    show.require_tools(SMOL.template, go=True, full_name="registry.ollama.ai/library/smollm2:135m")


def test_smollm2_renders_tools_and_messages() -> None:
    msgs = [Message(role="user", content="Weather in Paris?")]
    text = _render(msgs)
    assert text.startswith("<|im_start|>system\nYou are an expert in composing functions.")
    tools_json = text.split("<tools>", 1)[1].split("</tools>", 1)[0]
    assert json.loads(tools_json)[0]["function"]["name"] == "get_weather"
    assert text.endswith("<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n")


def test_smollm2_renders_system_without_tools() -> None:
    msgs = [Message(role="system", content=SMOL.system or ""),
            Message(role="user", content="Hi")]
    assert _render(msgs, with_tools=False) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
        "Hugging Face\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_smollm2_renders_a_tool_round_trip() -> None:
    call = {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
    msgs = [Message(role="user", content="Weather in Paris?"),
            Message(role="assistant", content="", tool_calls=(call,)),
            Message(role="tool", content="18 C, sunny")]
    text = _render(msgs)
    assert ('<|im_start|>assistant\n<tool_call>[\n{"name": "get_weather", "arguments": '
            '{"city":"Paris"}}\n]</tool_call><|im_end|>\n') in text
    assert text.endswith("<|im_start|>user\n<tool_response>\n18 C, sunny\n</tool_response>"
                         "<|im_end|>\n<|im_start|>assistant\n")


def test_smollm2_tool_calls_are_detected_and_parsed() -> None:
    fmt = tools.detect(go_template=SMOL.template, chat_template=None)
    assert fmt == tools.ToolFormat(prefix="<tool_call>", suffix="</tool_call>", array=True)
    parser = tools.ToolCallParser(fmt, ["get_weather"], new_id=lambda: "call_0")
    out = '<tool_call>[\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n]</tool_call>'
    content, calls = parser.feed(out)
    rest, more = parser.finish()
    assert content + rest == ""
    assert [(c.name, c.arguments) for c in calls + more] == [("get_weather", {"city": "Paris"})]


def test_library_lookup() -> None:
    for text in ("smollm2", "smollm2:135m", "SmolLM2:latest",
                 "registry.ollama.ai/library/smollm2"):
        assert library.lookup(parse_name(text)) is library.SMOLLM2_135M
    for text in ("smollm2:1.7b", "other", "user/smollm2", "example.com/library/smollm2"):
        assert library.lookup(parse_name(text)) is None
