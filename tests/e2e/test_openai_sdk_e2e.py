"""The OpenAI-compatible API (/v1) with the official ``openai`` SDK, against a real server and
SmolLM2: chat (plain, streamed with usage), completions, embeddings, models, structured output,
a tool-call round trip, reasoning, the Responses API, and the SDK's error classes."""

from __future__ import annotations

import base64
import json
import struct

import httpx
import jsonschema
import ollama
import openai
import pytest

from tests.conftest import Server
from tests.templates import THINK_TEMPLATE, TOOLS_TEMPLATE

pytestmark = pytest.mark.e2e

MODEL = "smol"
ASK = [{"role": "user", "content": "Say hello."}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    c = ollama.Client(host=server.url)
    c.create(model="smoltools", from_="smol", template=TOOLS_TEMPLATE)
    c.create(model="smolthink", from_="smol", template=THINK_TEMPLATE)
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="pollama", timeout=300,
                         max_retries=0)


def test_chat_completion(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=16, temperature=0,
                                       seed=1)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == MODEL and r.system_fingerprint == "fp_ollama"
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    # The same request twice at temperature 0 answers the same: the options reached the runner.
    again = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=16,
                                           temperature=0, seed=1)
    assert again.choices[0].message.content == choice.message.content


def test_max_tokens_bounds_the_answer(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=[
        {"role": "user", "content": "Write a long story about a dragon."}],
        max_completion_tokens=3, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 3


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason in ("stop", "length")
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens > 0
    # The streamed text is the unstreamed answer.
    plain = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=12,
                                           temperature=0)
    assert plain.choices[0].message.content == text


def test_sse_wire_ends_with_done(server: Server) -> None:
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", timeout=300, json={
            "model": MODEL, "messages": ASK, "max_tokens": 4, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(r.iter_bytes())
    events = [e for e in raw.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events)
    assert events[-1] == b"data: [DONE]"


def test_completions(client: openai.OpenAI) -> None:
    r = client.completions.create(model=MODEL, prompt="The capital of France is",
                                  max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert r.choices[0].text and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.prompt_tokens > 0
    streamed = list(client.completions.create(model=MODEL, prompt="The capital of France is",
                                              max_tokens=8, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == r.choices[0].text


def test_embeddings_float_base64_and_dimensions(client: openai.OpenAI, server: Server) -> None:
    r = client.embeddings.create(model=MODEL, input=["hello", "world"],
                                 encoding_format="float")
    assert r.object == "list" and [d.index for d in r.data] == [0, 1]
    vec = r.data[0].embedding
    assert len(vec) == 576 and abs(sum(x * x for x in vec) - 1) < 1e-3
    assert r.usage.prompt_tokens > 0
    # The SDK decodes base64 itself; check the wire too.
    raw = httpx.post(f"{server.url}/v1/embeddings", timeout=300, json={
        "model": MODEL, "input": "hello", "encoding_format": "base64"}).json()
    b64 = raw["data"][0]["embedding"]
    floats = struct.unpack(f"<{len(vec)}f", base64.b64decode(b64))
    assert max(abs(a - b) for a, b in zip(floats, vec)) < 1e-6
    short = client.embeddings.create(model=MODEL, input="hello", dimensions=8)
    assert len(short.data[0].embedding) == 8


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "smol:latest" in ids
    m = client.models.retrieve("smol:latest")
    assert m.id == "smol:latest" and m.object == "model" and m.owned_by == "library"
    assert m.created > 1_600_000_000


def test_json_schema_output_validates(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = client.chat.completions.create(
        model=MODEL, max_tokens=60, temperature=0,
        messages=[{"role": "user", "content": "Describe a person as JSON."}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "person", "schema": schema}})
    jsonschema.validate(json.loads(r.choices[0].message.content or ""), schema)


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat.completions.create(model="smoltools", messages=ask, tools=[WEATHER],
                                       tool_choice="required", max_tokens=60, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function"
    assert calls[0].function.name == "get_weather" and calls[0].id.startswith("call_")
    args = json.loads(calls[0].function.arguments)
    assert isinstance(args["city"], str)
    follow = client.chat.completions.create(model="smoltools", tools=[WEATHER], max_tokens=20,
                                            temperature=0, messages=[
        *ask, choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temperature": 21}'}])
    assert follow.choices[0].message.content
    # Streamed: the call arrives in a delta with its arguments as a JSON string.
    chunks = list(client.chat.completions.create(
        model="smoltools", messages=ask, tools=[WEATHER], tool_choice="required",
        max_tokens=60, temperature=0, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].function is not None
    assert json.loads(deltas[0].function.arguments or "") == args
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_reasoning_on_a_thinking_template(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="smolthink", messages=ASK, max_tokens=20,
                                       temperature=0, reasoning_effort="low")
    extra = r.choices[0].message.model_extra or {}
    assert extra.get("reasoning")  # the model starts inside <think>: its text is reasoning
    off = client.chat.completions.create(model="smolthink", messages=ASK, max_tokens=10,
                                         temperature=0, reasoning_effort="none")
    assert not (off.choices[0].message.model_extra or {}).get("reasoning")


def test_responses_api_plain_and_streamed(client: openai.OpenAI) -> None:
    r = client.responses.create(model=MODEL, input="Say hello.", instructions="Be brief.",
                                max_output_tokens=16, temperature=0)
    assert r.object == "response" and r.status in ("completed", "incomplete")
    assert r.output_text
    assert r.usage is not None and r.usage.input_tokens > 0
    events = list(client.responses.create(model=MODEL, input="Say hello.",
                                          instructions="Be brief.", max_output_tokens=16,
                                          temperature=0, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] in ("response.completed",
                                                            "response.incomplete")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == r.output_text
    seq = [e.sequence_number for e in events]
    assert seq == sorted(seq) and len(set(seq)) == len(seq)


def test_responses_function_call(client: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "get_weather", "description": "Weather for a city",
            "parameters": WEATHER["function"]["parameters"]}  # type: ignore[index]
    r = client.responses.create(model="smoltools", input="Weather in Paris?", tools=[tool],
                                tool_choice="required", max_output_tokens=60, temperature=0)
    calls = [o for o in r.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert isinstance(json.loads(calls[0].arguments)["city"], str)


def test_sdk_error_classes(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="no-such-model", messages=ASK)
    assert "not found" in nf.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=[])
    assert "too short" in bad.value.message
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input="x",
                                 encoding_format="hex")  # type: ignore[arg-type]
