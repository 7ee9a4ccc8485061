"""Tool calls (template-detected format, grammar-constrained decoding, streaming without leaked
call text, follow-up tool messages) and thinking, against SmolLM2 with the official client."""

from __future__ import annotations

import json

import httpx
import jsonschema
import ollama
import pytest

from tests.templates import THINK_TEMPLATE, TOOLS_TEMPLATE
from tests.conftest import Server

pytestmark = pytest.mark.e2e

# Qwen2.5-style tool template (as Ollama's library ships for tool models).


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string", "description": "The city"}}}}}




@pytest.fixture(scope="module")
def client(server: Server) -> ollama.Client:
    c = ollama.Client(host=server.url)
    c.create(model="smoltools", from_="smol", template=TOOLS_TEMPLATE,
             system="You are a helpful assistant. Use tools when they help.")
    c.create(model="smolthink", from_="smol", template=THINK_TEMPLATE)
    return c


ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
# SmolLM2-135M does not choose to call tools on its own. tool_choice "required" (a pollama
# extension; Ollama ignores tool_choice) makes the grammar admit only a well-formed call.
REQUIRED = {"tool_choice": "required"}
OPTS = {"temperature": 0, "num_predict": 80}


def test_capabilities(client: ollama.Client, server: Server) -> None:
    assert "tools" in client.show("smoltools").capabilities
    assert "thinking" in client.show("smolthink").capabilities
    r = httpx.post(f"{server.url}/api/chat", json={"model": "smol", "messages": ASK,
                                                   "tools": [WEATHER]})
    assert (r.status_code, r.json()) == (
        400, {"error": "registry.ollama.ai/library/smol:latest does not support tools"})


def chat(server: Server, **body: object) -> dict[str, object]:
    r = httpx.post(f"{server.url}/api/chat", timeout=120, json={
        "model": "smoltools", "messages": ASK, "tools": [WEATHER], "stream": False,
        "options": OPTS, **body})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_tool_call_with_grammar(server: Server) -> None:
    msg = chat(server, **REQUIRED)["message"]
    calls = msg["tool_calls"]  # type: ignore[index]
    assert len(calls) == 1
    fn = calls[0]["function"]
    assert fn["name"] == "get_weather" and fn["index"] == 0
    assert isinstance(fn["arguments"], dict) and isinstance(fn["arguments"]["city"], str)
    assert calls[0]["id"].startswith("call_") and len(calls[0]["id"]) == 13
    assert "<tool_call>" not in msg["content"]  # type: ignore[operator]


def test_auto_lets_the_model_answer_in_text(client: ollama.Client) -> None:
    # Ollama's behaviour: text or a call; this model answers in text, nothing leaks as a call.
    r = client.chat(model="smoltools", messages=ASK, tools=[WEATHER], options=OPTS)
    assert r.message.content and not r.message.tool_calls


def test_tool_choice_forms(server: Server) -> None:
    named = chat(server, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert (named["message"]["tool_calls"][0]["function"]["name"]  # type: ignore[index]
            == "get_weather")
    none = chat(server, tool_choice="none")
    assert "tool_calls" not in none["message"]  # type: ignore[operator]
    r = httpx.post(f"{server.url}/api/chat", json={
        "model": "smoltools", "messages": ASK, "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "nope"}}})
    assert r.status_code == 400


def test_tool_call_streaming_does_not_leak(server: Server) -> None:
    body = {"model": "smoltools", "messages": ASK, "tools": [WEATHER], "options": OPTS, **REQUIRED}
    with httpx.stream("POST", f"{server.url}/api/chat", json=body, timeout=120) as r:
        chunks = [json.loads(line) for line in r.iter_lines() if line]
    text = "".join(c["message"]["content"] for c in chunks)
    assert "<tool_call>" not in text and "get_weather" not in text
    with_calls = [c for c in chunks if c["message"].get("tool_calls")]
    assert len(with_calls) == 1 and with_calls[0]["done"] is False
    assert with_calls[0]["message"]["content"] == ""
    assert with_calls[0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert chunks[-1]["done"] is True


def test_tool_result_follow_up_renders(server: Server, client: ollama.Client) -> None:
    first = chat(server, **REQUIRED)["message"]
    msgs = ASK + [first, {"role": "tool", "tool_name": "get_weather", "content": "Sunny, 24 C"}]
    rendered = httpx.post(f"{server.url}/api/chat", timeout=60, json={
        "model": "smoltools", "messages": msgs, "tools": [WEATHER],
        "_debug_render_only": True}).json()["_debug_info"]["rendered_template"]
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city":' in rendered
    assert "<tool_response>\nSunny, 24 C\n</tool_response>" in rendered
    answer = client.chat(model="smoltools", messages=msgs, tools=[WEATHER], options=OPTS)
    assert answer.done and answer.message.content


def test_thinking_is_separated(server: Server, client: ollama.Client) -> None:
    r = client.chat(model="smolthink", messages=[{"role": "user", "content": "Is 7 prime?"}],
                    options={"temperature": 0, "num_predict": 60})
    # The prompt ends inside <think>: everything until </think> is thinking.
    assert r.message.thinking
    assert "<think>" not in (r.message.content or "") and "</think>" not in r.message.thinking
    off = client.chat(model="smolthink", think=False,
                      options={"temperature": 0, "num_predict": 20},
                      messages=[{"role": "user", "content": "Is 7 prime?"}])
    assert not off.message.thinking and off.message.content
    g = client.generate(model="smolthink", prompt="Is 7 prime?",
                        options={"temperature": 0, "num_predict": 40})
    assert g.thinking


# Few-shot turns that close their reasoning: SmolLM2-135M copies the pattern, so it ends its
# own reasoning with </think> (unprompted it never does).
FEW_SHOT = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "thinking": "2 plus 2 makes 4.", "content": '{"answer": 4}'},
    {"role": "user", "content": "What is the capital of Spain?"},
    {"role": "assistant", "thinking": "Spain's capital is Madrid.",
     "content": '{"answer": "Madrid"}'},
    {"role": "user", "content": "What color is grass?"},
    {"role": "assistant", "thinking": "Grass is green.", "content": '{"answer": "green"}'},
    {"role": "user", "content": "What is the capital of France?"},
]
# Not the shape the examples show: only the grammar can make the answer fit it.
CITY = {"type": "object", "required": ["city", "country_code"],
        "properties": {"city": {"type": "string", "maxLength": 30},
                       "country_code": {"type": "string", "maxLength": 3}}}


@pytest.mark.parametrize("stream", [False, True])
def test_format_applies_after_thinking(server: Server, client: ollama.Client,
                                       stream: bool) -> None:
    """format + thinking: the reasoning is free text, the answer after it is constrained
    (Ollama's api/types.go ThinkValue)."""
    body = {"model": "smolthink", "messages": FEW_SHOT, "format": CITY, "stream": stream,
            "options": {"temperature": 0, "num_predict": 120}}
    with httpx.stream("POST", f"{server.url}/api/chat", json=body, timeout=120) as r:
        assert r.status_code == 200
        chunks = [json.loads(line) for line in r.iter_lines() if line]
    assert all("error" not in c for c in chunks)
    thought = "".join(c["message"].get("thinking", "") for c in chunks)
    content = "".join(c["message"]["content"] for c in chunks)
    assert chunks[-1]["done"] and chunks[-1]["done_reason"] == "stop"
    assert "Paris" in thought and "<think>" not in thought and "</think>" not in thought
    assert not thought.lstrip().startswith("{")  # no grammar while reasoning
    jsonschema.validate(json.loads(content), CITY)
    # without thinking the same request is constrained from the first token
    off = httpx.post(f"{server.url}/api/chat", timeout=120, json={**body, "think": False,
                                                                  "stream": False}).json()
    assert "thinking" not in off["message"]
    jsonschema.validate(json.loads(off["message"]["content"]), CITY)


def test_think_errors(server: Server) -> None:
    r = httpx.post(f"{server.url}/api/chat", json={
        "model": "smol", "messages": ASK, "think": True})
    assert (r.status_code, r.json()) == (400, {"error": '"smol" does not support thinking'})
    r = httpx.post(f"{server.url}/api/chat", json={
        "model": "smol", "messages": ASK, "think": "lots"})
    assert r.status_code == 400 and r.json()["error"].startswith('invalid think value: "lots"')
    r = httpx.post(f"{server.url}/api/chat", timeout=60, json={
        "model": "smol", "messages": ASK, "think": False, "stream": False,
        "options": {"num_predict": 2}})
    assert r.status_code == 200
