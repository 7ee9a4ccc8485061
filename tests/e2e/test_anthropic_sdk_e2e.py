"""The Anthropic-compatible API (/v1/messages) with the official ``anthropic`` SDK, against a
real server and SmolLM2: messages plain and streamed (the full event sequence), thinking blocks,
a tool_use round trip, count_tokens, and the SDK's error classes."""

from __future__ import annotations

import anthropic
import ollama
import pytest

from tests.conftest import Server
from tests.templates import THINK_TEMPLATE, TOOLS_TEMPLATE

pytestmark = pytest.mark.e2e
# The anthropic SDK (2.x) no longer takes temperature/top_p/top_k as arguments; the API
# still does, so they go in extra_body.

MODEL = "smol"
ASK = [{"role": "user", "content": "Say hello."}]
WEATHER = {"name": "get_weather", "description": "Get the current weather for a city",
           "input_schema": {"type": "object", "required": ["city"],
                            "properties": {"city": {"type": "string"}}}}


@pytest.fixture(scope="module")
def client(server: Server) -> anthropic.Anthropic:
    c = ollama.Client(host=server.url)
    c.create(model="smoltools", from_="smol", template=TOOLS_TEMPLATE)
    c.create(model="smolthink", from_="smol", template=THINK_TEMPLATE)
    return anthropic.Anthropic(base_url=server.url, api_key="pollama", timeout=300,
                               max_retries=0)


def test_message(client: anthropic.Anthropic) -> None:
    m = client.messages.create(model=MODEL, max_tokens=16, messages=ASK,  # type: ignore[arg-type]
                               system="Be brief.", extra_body={"temperature": 0})
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert m.content and m.content[0].type == "text" and m.content[0].text
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0


def test_max_tokens_stop_reason(client: anthropic.Anthropic) -> None:
    m = client.messages.create(model=MODEL, max_tokens=2, extra_body={"temperature": 0}, messages=[
        {"role": "user", "content": "Write a long story about a dragon."}])
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 2


def test_stream_event_sequence(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=12, messages=ASK,  # type: ignore[arg-type]
                                extra_body={"temperature": 0}) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    raw = [t for t in events if t in ("message_start", "content_block_start",
                                      "content_block_delta", "content_block_stop",
                                      "message_delta", "message_stop")]
    assert raw[0] == "message_start" and raw[1] == "content_block_start"
    assert raw[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "content_block_delta" in raw
    assert final.content[0].type == "text" and final.content[0].text
    plain = client.messages.create(
        model=MODEL, max_tokens=12, messages=ASK,  # type: ignore[arg-type]
        extra_body={"temperature": 0})
    assert plain.content[0].type == "text" and plain.content[0].text == final.content[0].text


def test_thinking_blocks(client: anthropic.Anthropic) -> None:
    # Greedy, so the streamed answer is the one just checked (a sampled one may think nothing)
    m = client.messages.create(
        model="smolthink", max_tokens=30, messages=ASK,  # type: ignore[arg-type]
        thinking={"type": "enabled", "budget_tokens": 1024}, extra_body={"temperature": 0})
    assert m.content[0].type == "thinking" and m.content[0].thinking
    with client.messages.stream(
            model="smolthink", max_tokens=30, messages=ASK,  # type: ignore[arg-type]
            thinking={"type": "enabled", "budget_tokens": 1024},
            extra_body={"temperature": 0}) as s:
        deltas = [e.delta.type for e in s if e.type == "content_block_delta"]
        final = s.get_final_message()
    assert "thinking_delta" in deltas and final.content[0].type == "thinking"


def test_tool_use_round_trip(client: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    m = client.messages.create(
        model="smoltools", max_tokens=60, messages=ask,  # type: ignore[arg-type]
        tools=[WEATHER], tool_choice={"type": "any"},  # type: ignore[list-item]
        extra_body={"temperature": 0})
    uses = [b for b in m.content if b.type == "tool_use"]
    assert m.stop_reason == "tool_use" and len(uses) == 1
    assert uses[0].name == "get_weather"
    assert isinstance(uses[0].input["city"], str)  # type: ignore[index]
    follow = client.messages.create(
        model="smoltools", max_tokens=20, tools=[WEATHER],  # type: ignore[list-item]
        extra_body={"temperature": 0}, messages=[
            *ask, {"role": "assistant", "content": [b.model_dump() for b in m.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                          "content": "21 degrees"}]}])  # type: ignore[list-item]
    assert follow.content and follow.content[0].type == "text"
    with client.messages.stream(
            model="smoltools", max_tokens=60, messages=ask,  # type: ignore[arg-type]
            tools=[WEATHER], tool_choice={"type": "any"},  # type: ignore[list-item]
            extra_body={"temperature": 0}) as s:
        deltas = [e.delta.type for e in s if e.type == "content_block_delta"]
        final = s.get_final_message()
    assert "input_json_delta" in deltas
    assert [b.type for b in final.content][-1] == "tool_use"


def test_count_tokens(client: anthropic.Anthropic) -> None:
    short = client.messages.count_tokens(model=MODEL, messages=ASK)  # type: ignore[arg-type]
    longer = client.messages.count_tokens(model=MODEL, system="You are a pirate. " * 20,
                                          messages=ASK)  # type: ignore[arg-type]
    assert 0 < short.input_tokens < longer.input_tokens


def test_sdk_error_classes(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as nf:
        client.messages.create(model="no-such-model", max_tokens=8,
                               messages=ASK)  # type: ignore[arg-type]
    assert nf.value.body["type"] == "error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model=MODEL, max_tokens=0, messages=ASK)  # type: ignore[arg-type]
    assert "max_tokens" in str(bad.value)


def test_thinking_on_a_model_that_cannot_think_is_ignored(client: anthropic.Anthropic) -> None:
    # As Ollama's /v1/messages (its native /api/chat answers 400 for the same request).
    m = client.messages.create(model=MODEL, max_tokens=8, messages=ASK,  # type: ignore[arg-type]
                               thinking={"type": "enabled", "budget_tokens": 1024})
    assert [b.type for b in m.content] == ["text"]
