"""core/openai_responses.py: Responses API request translation, response object, stream events.

The stream is checked with the openai SDK's own event models and its stream accumulator
(``ResponseStreamState``), which refuses overlapping output indexes and unfinished items."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import jsonwire
from pollama.core import openai_responses as orsp
from pollama.core import requests as rq
from pollama.core.errors import BadRequest, PollamaError

pytest.importorskip("openai")
from openai._types import omit  # noqa: E402
from openai.lib.streaming.responses._responses import ResponseStreamState  # noqa: E402
from openai.types.responses import Response, ResponseStreamEvent  # noqa: E402
from pydantic import TypeAdapter  # noqa: E402

EVENT = TypeAdapter(ResponseStreamEvent)
PNG = "data:image/png;base64,aGk="
TOOL = {"type": "function", "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": None}


def request(**kw: Any) -> dict[str, Any]:
    return orsp.responses_request({"model": "m", **kw})


# ---------------------------------------------------------------------------------------------
# request translation


def test_string_input_and_defaults() -> None:
    native = request(input="hi")
    assert native == {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                      "stream": False, "options": {"temperature": 1.0}}
    rq.parse_chat(native)


def test_settings() -> None:
    native = request(input="hi", instructions="be brief", max_output_tokens=50, temperature=0.3,
                     top_p=0.9, reasoning={"effort": "high", "summary": "auto"}, stream=True,
                     text={"format": {"type": "json_schema", "name": "x",
                                      "schema": {"type": "object"}, "strict": True}})
    assert native["messages"][0] == {"role": "system", "content": "be brief"}
    assert native["options"] == {"temperature": 0.3, "top_p": 0.9, "num_predict": 50}
    assert native["think"] == "high" and native["stream"] is True
    assert native["format"] == {"type": "object"}
    assert request(input="x", text={"format": {"type": "json_object"}})["format"] == "json"
    assert "format" not in request(input="x", text={"format": {"type": "text"}})
    assert request(input="x", reasoning={"effort": "none"})["think"] is False
    assert "messages" in request(input="") and request(input="")["messages"] == []


def test_tools_flat_to_nested_namespaces_and_web_search() -> None:
    native = request(input="x", tools=[
        TOOL,
        {"type": "function", "name": "bare", "parameters": None},
        {"type": "namespace", "name": "fs", "tools": [
            {"type": "function", "name": "read", "parameters": {"type": "object"}},
            {"type": "function", "name": "fs.write", "parameters": {"type": "object"}}]},
        {"type": "web_search"},
        {"type": "function", "name": "web_search", "parameters": {"type": "object"}},
    ])
    assert native["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                          "parameters": TOOL["parameters"]}},
        {"type": "function", "function": {"name": "bare", "parameters": {
            "type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "fs.read", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "fs.write",
                                          "parameters": {"type": "object"}}},
    ]
    rq.parse_chat(native)


@pytest.mark.parametrize(("choice", "native"), [
    ("auto", "auto"), ("none", "none"), ("required", "required"),
    ({"type": "function", "name": "get_weather"},
     {"type": "function", "function": {"name": "get_weather"}}),
])
def test_tool_choice(choice: Any, native: Any) -> None:
    body = request(input="x", tools=[TOOL], tool_choice=choice)
    assert body["tool_choice"] == native
    rq.parse_chat(body)


def test_items_conversation() -> None:
    native = request(input=[
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "what is "}, {"type": "input_text", "text": "this?"},
            {"type": "input_image", "detail": "auto", "image_url": PNG},
            {"type": "input_image", "detail": "auto", "file_id": "file_1"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "hmm"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": "It is sunny."}]},
        {"type": "function_call_output", "call_id": "call_2", "output": [
            {"type": "input_text", "text": "a"}, {"type": "output_text", "text": "b"},
            {"type": "input_image", "detail": "low", "image_url": PNG}]},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "tail"}]},
    ])
    assert native["messages"] == [
        {"role": "developer", "content": "rules"},
        {"role": "user", "content": "what is this?", "images": ["aGk="]},
        {"role": "assistant", "content": "", "thinking": "hmm", "tool_calls": [
            {"id": "call_1", "function": {"index": 0, "name": "get_weather",
                                          "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather",
         "tool_call_id": "call_1"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "tool", "content": "ab", "images": ["aGk="], "tool_call_id": "call_2"},
        {"role": "assistant", "content": "", "thinking": "tail"},
    ]
    rq.parse_chat(native)


def test_function_calls_merge_into_the_assistant_message() -> None:
    native = request(input=[
        {"role": "user", "content": "go"},
        {"type": "message", "role": "assistant", "content": "Let me look."},
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": ""},
        {"type": "function_call", "call_id": "b", "name": "g", "arguments": "{}"},
        # an assistant message replayed between a call and its output joins that message
        {"type": "message", "role": "assistant", "content": "Checking."},
        {"type": "function_call_output", "call_id": "a", "output": "1"},
        {"type": "function_call_output", "call_id": "b", "output": "2"},
    ])
    assert native["messages"] == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "Let me look.\nChecking.", "tool_calls": [
            {"id": "a", "function": {"index": 0, "name": "f", "arguments": {}}},
            {"id": "b", "function": {"index": 1, "name": "g", "arguments": {}}}]},
        {"role": "tool", "content": "1", "tool_name": "f", "tool_call_id": "a"},
        {"role": "tool", "content": "2", "tool_name": "g", "tool_call_id": "b"},
    ]


ERRORS: list[tuple[Any, str]] = [
    ([], "json: cannot unmarshal array into Go value of type openai.ResponsesRequest"),
    ({"input": 5}, "input must be a string or array: json: cannot unmarshal number into Go "
                   "value of type []json.RawMessage"),
    ({"input": [{"content": "x"}]}, "input[0]: input item missing required 'type' field"),
    ({"input": ["x"]}, 'input[0]: json: cannot unmarshal string into Go value of type struct '
                       '{ Type string "json:\\"type\\""; Role string "json:\\"role\\"" }'),
    ({"input": [{"type": "item_reference", "id": "x"}]},
     'input[0]: unknown input item type: "item_reference"'),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "input[0]: content[0]: unknown content type: input_audio"),
    ({"input": [{"role": "user", "content": [{"text": "x"}]}]},
     "input[0]: content[0]: unknown content type: "),
    ({"input": [{"role": "user", "content": 3}]},
     "input[0]: content must be a string or array: json: cannot unmarshal number into Go value "
     "of type []json.RawMessage"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_data": "x"}]}]},
     "file inputs are not currently supported"),
    ({"input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.com/a.png"}]}]},
     "image URLs are not currently supported, please use base64 encoded data instead"),
    ({"input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "data:image/bmp;base64,aGk="}]}]},
     "invalid image input"),
    ({"input": [{"type": "function_call_output", "call_id": "a", "output": {"x": 1}}]},
     "input[0]: output must be a string or array: json: cannot unmarshal object into Go value "
     "of type []json.RawMessage"),
    ({"input": [{"type": "function_call_output", "call_id": "a",
                 "output": [{"type": "refusal"}]}]},
     "input[0]: output[0]: unknown content type: refusal"),
    ({"input": [{"type": "function_call", "call_id": "a", "name": "f", "arguments": "{x"}]},
     "failed to parse function call arguments: invalid character 'x' looking for beginning "
     "of object key string"),
    ({"input": [{"type": "function_call", "call_id": 1, "name": "f"}]},
     "input[0]: json: cannot unmarshal number into Go struct field "
     "ResponsesFunctionCall.call_id of type string"),
    ({"input": "x", "reasoning": {"effort": "huge"}},
     'invalid reasoning value: "huge" (must be "minimal", "low", "medium", "high", "xhigh", '
     '"ultra", "max", or "none")'),
    ({"input": "x", "max_output_tokens": "5"},
     "json: cannot unmarshal string into Go struct field ResponsesRequest.max_output_tokens "
     "of type int"),
    ({"input": "x", "tools": [{"type": "function", "name": 3}]},
     "json: cannot unmarshal number into Go struct field ResponsesRequest.tools.name of type "
     "string"),
    ({"input": "x", "text": {"format": "json"}},
     "json: cannot unmarshal string into Go struct field ResponsesRequest.text.format of type "
     "openai.ResponsesTextFormat"),
    ({"input": "x", "previous_response_id": "resp_1"},
     "previous_response_id is not supported: responses are not stored, send the whole "
     "conversation as input"),
]


@pytest.mark.parametrize(("body", "message"), ERRORS)
def test_request_errors(body: Any, message: str) -> None:
    with pytest.raises(BadRequest) as exc:
        orsp.responses_request(body)
    assert exc.value.message == message


# ---------------------------------------------------------------------------------------------
# response object


def native(**kw: Any) -> dict[str, Any]:
    msg = {"role": "assistant", "content": kw.pop("content", "")}
    for key in ("thinking", "tool_calls"):
        if key in kw:
            msg[key] = kw.pop(key)
    out = {"model": "m", "created_at": "2026-01-01T00:00:00Z", "message": msg,
           "done": kw.pop("done", True)}
    out.update(kw)
    return out


CALL = {"id": "call_ab12cd34", "function": {"index": 0, "name": "get_weather",
                                            "arguments": {"city": "Paris"}}}
CALL2 = {"id": "call_ef56gh78", "function": {"index": 1, "name": "get_weather",
                                             "arguments": {"city": "Oslo"}}}
BODY = {"model": "m", "input": "hi", "instructions": "be brief", "tools": [TOOL],
        "temperature": 0.5, "max_output_tokens": 100, "reasoning": {"effort": "low"}}


def test_response_object_text() -> None:
    out = orsp.responses_object(native(content="Hello", done_reason="stop",
                                       prompt_eval_count=5, eval_count=2),
                                id="resp_1", created=100, request=BODY, completed_at=101)
    Response.model_validate(out)
    assert out["object"] == "response" and out["status"] == "completed"
    assert out["created_at"] == 100 and out["completed_at"] == 101
    assert out["output"] == [{"id": "msg_1", "type": "message", "status": "completed",
                              "role": "assistant", "content": [
                                  {"type": "output_text", "text": "Hello", "annotations": [],
                                   "logprobs": []}]}]
    assert out["usage"]["input_tokens"] == 5 and out["usage"]["total_tokens"] == 7
    assert out["instructions"] == "be brief" and out["temperature"] == 0.5
    assert out["top_p"] == 1.0 and out["max_output_tokens"] == 100
    assert out["tools"] == [{"type": "function", "name": "get_weather", "description": "Weather",
                             "strict": None, "parameters": TOOL["parameters"]}]
    assert out["reasoning"] == {"effort": "low", "summary": None}
    assert out["tool_choice"] == "auto" and out["text"] == {"format": {"type": "text"}}
    assert Response.model_validate(out).output_text == "Hello"


def test_response_object_reasoning_and_tool_calls() -> None:
    out = orsp.responses_object(native(thinking="plan", content="Let me check.",
                                       tool_calls=[CALL, CALL2], done_reason="stop"),
                                id="resp_1", created=100, request=BODY)
    Response.model_validate(out)
    assert [o["type"] for o in out["output"]] == ["reasoning", "message", "function_call",
                                                  "function_call"]
    assert out["output"][0] == {"id": "rs_resp_1", "type": "reasoning", "summary": [
        {"type": "summary_text", "text": "plan"}], "encrypted_content": "plan"}
    assert out["output"][2] == {"id": "fc_resp_1_0", "type": "function_call",
                                "status": "completed", "call_id": "call_ab12cd34",
                                "name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert out["output"][3]["id"] == "fc_resp_1_1"
    only_calls = orsp.responses_object(native(tool_calls=[CALL], done_reason="stop"),
                                       id="resp_1", created=1)
    assert [o["type"] for o in only_calls["output"]] == ["function_call"]


def test_response_object_incomplete() -> None:
    out = orsp.responses_object(native(content="trunc", done_reason="length"), id="resp_1",
                                created=1, request={"text": {"format": {
                                    "type": "json_schema", "name": "x",
                                    "schema": {"type": "object"}}}})
    Response.model_validate(out)
    assert out["status"] == "incomplete"
    assert out["incomplete_details"] == {"reason": "max_output_tokens"}
    assert out["output"][0]["status"] == "incomplete"
    assert out["text"] == {"format": {"type": "json_schema", "name": "x",
                                      "schema": {"type": "object"}}}


def test_response_object_echoes_tool_choice_and_survives_odd_requests() -> None:
    out = orsp.responses_object(native(content="x", done_reason="stop"), id="resp_1", created=1,
                                request={"tool_choice": "required"})
    assert out["tool_choice"] == "required"
    for req in (None, [], {"tools": "x", "temperature": "hot", "reasoning": 1}):
        Response.model_validate(orsp.responses_object(native(content="x"), id="resp_1",
                                                      created=1, request=req))


# ---------------------------------------------------------------------------------------------
# stream


def run(lines: list[dict[str, Any]], request: Any = BODY,
        now: int | None = 200) -> list[tuple[str, dict[str, Any]]]:
    stream = orsp.ResponsesStream("resp_1", 100, "m", request=request)
    events: list[tuple[str, dict[str, Any]]] = []
    for line in lines:
        events += stream.events(line, now=now)
    assert stream.finished
    check(events)
    return events


def check(events: list[tuple[str, dict[str, Any]]]) -> ResponseStreamState[Any]:
    """The events are valid SDK events, numbered from 0, and the SDK can accumulate them."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for n, (kind, data) in enumerate(events):
        assert data["type"] == kind and data["sequence_number"] == n
        json.loads(jsonwire.dumps(data))
        state.handle_event(EVENT.validate_python(data))
    return state


def kinds(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [k.removeprefix("response.") for k, _ in events]


def test_stream_text() -> None:
    events = run([native(content="Hel", done=False), native(content="lo", done=False),
                  native(done_reason="stop", prompt_eval_count=3, eval_count=2)])
    assert kinds(events) == [
        "created", "in_progress", "output_item.added", "content_part.added",
        "output_text.delta", "output_text.delta", "output_text.done", "content_part.done",
        "output_item.done", "completed"]
    created = events[0][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] \
        and created["usage"] is None
    final = events[-1][1]["response"]
    assert final["status"] == "completed" and final["completed_at"] == 200
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["usage"]["total_tokens"] == 5
    assert events[6][1]["text"] == "Hello"
    assert Response.model_validate(final).output_text == "Hello"


def test_stream_reasoning_then_text() -> None:
    events = run([native(thinking="Let me ", done=False), native(thinking="think", done=False),
                  native(content="Answer", done=False), native(done_reason="stop")])
    assert kinds(events) == [
        "created", "in_progress",
        "output_item.added", "reasoning_summary_part.added",
        "reasoning_summary_text.delta", "reasoning_summary_text.delta",
        "reasoning_summary_text.done", "reasoning_summary_part.done", "output_item.done",
        "output_item.added", "content_part.added", "output_text.delta",
        "output_text.done", "content_part.done", "output_item.done", "completed"]
    assert events[6][1]["text"] == "Let me think"
    assert [e[1]["output_index"] for e in events[2:9]] == [0] * 7
    assert [e[1]["output_index"] for e in events[9:15]] == [1] * 6
    output = events[-1][1]["response"]["output"]
    assert output[0]["summary"][0]["text"] == "Let me think"
    assert output[0]["encrypted_content"] == "Let me think"


def test_stream_tool_calls_after_text_close_the_message_first() -> None:
    events = run([native(content="Checking", done=False),
                  native(tool_calls=[CALL, CALL2], done=False),
                  native(content="ignored after calls", done=False),
                  native(done_reason="stop")])
    assert kinds(events) == [
        "created", "in_progress", "output_item.added", "content_part.added",
        "output_text.delta", "output_text.done", "content_part.done", "output_item.done",
        "output_item.added", "function_call_arguments.delta", "function_call_arguments.done",
        "output_item.done",
        "output_item.added", "function_call_arguments.delta", "function_call_arguments.done",
        "output_item.done", "completed"]
    added = events[8][1]
    assert added["output_index"] == 1 and added["item"]["status"] == "in_progress" \
        and added["item"]["arguments"] == ""
    assert events[9][1]["delta"] == '{"city":"Paris"}'
    output = events[-1][1]["response"]["output"]
    assert [o["type"] for o in output] == ["message", "function_call", "function_call"]
    assert output[1]["id"] != output[2]["id"]
    assert output[1]["call_id"] == "call_ab12cd34"


def test_stream_thinking_after_text_opens_a_new_item() -> None:
    events = run([native(content="a", done=False), native(thinking="b", done=False),
                  native(content="c", done=False), native(done_reason="stop")])
    output = events[-1][1]["response"]["output"]
    assert [o["type"] for o in output] == ["message", "reasoning", "message"]
    assert len({o["id"] for o in output}) == 3


def test_stream_length_is_incomplete() -> None:
    events = run([native(content="trunc", done_reason="length")])
    assert kinds(events)[-1] == "incomplete"
    final = events[-1][1]["response"]
    assert final["status"] == "incomplete" and final["output"][0]["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}


def test_stream_empty_answer() -> None:
    events = run([native(done_reason="stop")], now=None)
    assert kinds(events) == ["created", "in_progress", "completed"]
    assert events[-1][1]["response"]["output"] == []
    assert events[-1][1]["response"]["completed_at"] == 100


def test_stream_error_is_response_failed() -> None:
    stream = orsp.ResponsesStream("resp_1", 100, "m", request=BODY)
    events = stream.events(native(content="partial", done=False))
    events += stream.events({"error": "llama runner process has terminated"})
    assert kinds(events)[-1] == "failed"
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error",
                               "message": "llama runner process has terminated"}
    assert stream.finished and stream.failed
    assert stream.events(native(done_reason="stop")) == []
    assert stream.error("again") == []
    for n, (_, data) in enumerate(events):
        EVENT.validate_python(data)
        assert data["sequence_number"] == n
    fresh = orsp.ResponsesStream("resp_2", 1, "m")
    assert kinds(fresh.error("boom")) == ["created", "in_progress", "failed"]


_line = st.fixed_dictionaries({}, optional={
    "content": st.text(max_size=3), "thinking": st.text(max_size=3),
    "tool_calls": st.lists(st.just(CALL), max_size=2)})


@given(st.lists(_line, max_size=6), st.sampled_from(["stop", "length"]))
def test_any_line_sequence_is_a_valid_stream(lines: list[dict[str, Any]], reason: str) -> None:
    n = 0
    for m in lines:  # call ids are unique in a response
        calls = []
        for c in m.get("tool_calls", ()):
            calls.append({**c, "id": f"call_{n}"})
            n += 1
        if calls:
            m["tool_calls"] = calls
    natives = [native(done=False, **m) for m in lines] + [native(done_reason=reason)]
    events = run(natives)
    output = events[-1][1]["response"]["output"]
    # the text shown is exactly the content that came before any tool call
    shown = "".join(c["text"] for o in output if o["type"] == "message" for c in o["content"])
    expected = ""
    for m in lines:
        if m.get("tool_calls"):
            break
        expected += m.get("content", "")
    assert shown == expected
    thought = "".join(o["summary"][0]["text"] for o in output if o["type"] == "reasoning")
    assert thought == "".join(m.get("thinking", "") for m in lines)
    assert sum(o["type"] == "function_call" for o in output) == sum(
        len(m.get("tool_calls", ())) for m in lines)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(
                         ["model", "input", "type", "role", "content", "text", "call_id",
                          "name", "arguments", "output", "tools", "parameters", "image_url",
                          "instructions", "reasoning", "effort", "format", "summary",
                          "encrypted_content"]), inner, max_size=4), max_leaves=14)


@given(_json)
def test_any_body_gives_a_native_body_or_our_error(body: Any) -> None:
    try:
        native_body = orsp.responses_request(body)
    except PollamaError:
        return
    try:
        rq.parse_chat(json.loads(jsonwire.dumps(native_body)))
    except PollamaError:
        pass
