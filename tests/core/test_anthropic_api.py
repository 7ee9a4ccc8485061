"""core/anthropic_api.py: Anthropic Messages API ⇄ native /api/chat (Ollama's
anthropic/anthropic.go).

Expected values follow Ollama's anthropic/anthropic.go and middleware/anthropic.go; shapes are
checked against the ``anthropic`` SDK's own types and stream accumulator when it is installed.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from pollama.core import anthropic_api as a
from pollama.core import requests as native_requests
from pollama.core.errors import BadRequest

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def _req(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "max_tokens": 16,
                            "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return body


# ---------------------------------------------------------------------------------------------
# Requests

REQUEST_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("basic", _req(), {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 16}, "stream": False}),
    ("stream", _req(stream=True), {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 16}, "stream": True}),
    ("system string", _req(system="be brief"), {
        "model": "m", "messages": [{"role": "system", "content": "be brief"},
                                   {"role": "user", "content": "hi"}],
        "options": {"num_predict": 16}, "stream": False}),
    ("system blocks joined as Ollama does", _req(system=[
        {"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]), {
        "model": "m", "messages": [{"role": "system", "content": "ab"},
                                   {"role": "user", "content": "hi"}],
        "options": {"num_predict": 16}, "stream": False}),
    ("empty system dropped", _req(system=""), {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 16}, "stream": False}),
    ("sampling options", _req(temperature=0.5, top_p=0.9, top_k=40,
                              stop_sequences=["END", "STOP"], metadata={"user_id": "u"}), {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 16, "temperature": 0.5, "top_p": 0.9, "top_k": 40,
                    "stop": ["END", "STOP"]}, "stream": False}),
    ("text blocks and image", _req(messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is "},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "this?"}]}]), {
        "model": "m", "messages": [{"role": "user", "content": "what is this?", "images": [PNG]}],
        "options": {"num_predict": 16}, "stream": False}),
    ("role lower-cased, empty message dropped", _req(messages=[
        {"role": "User", "content": "hi"}, {"role": "assistant", "content": ""}]), {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 16}, "stream": False}),
    ("tool round trip", _req(
        tools=[{"name": "get_weather", "description": "Weather",
                "input_schema": {"type": "object",
                                 "properties": {"city": {"type": "string"}}}}],
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "need a tool", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                 "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "text", "text": "and tomorrow?"}]}]), {
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": "Let me check.", "thinking": "need a tool",
             "tool_calls": [{"id": "toolu_1", "function": {
                 "name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather",
             "tool_call_id": "toolu_1"},
            {"role": "user", "content": "and tomorrow?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "options": {"num_predict": 16}, "stream": False}),
    ("tool_result blocks with image, unknown tool id, is_error ignored", _req(messages=[
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "is_error": True,
                                      "content": [
            {"type": "text", "text": "a"}, {"type": "text", "text": "b"},
            {"type": "image", "source": {"type": "base64", "data": PNG}}]}]}]), {
        "model": "m",
        "messages": [{"role": "tool", "content": "ab", "images": [PNG], "tool_call_id": "x"}],
        "options": {"num_predict": 16}, "stream": False}),
    ("tool_result without content", _req(messages=[
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x"}]}]), {
        "model": "m", "messages": [{"role": "tool", "content": "", "tool_call_id": "x"}],
        "options": {"num_predict": 16}, "stream": False}),
    ("tool_use without input", _req(messages=[
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f"}]}]), {
        "model": "m", "messages": [{"role": "assistant", "content": "", "tool_calls": [
            {"id": "t", "function": {"name": "f", "arguments": {}}}]}],
        "options": {"num_predict": 16}, "stream": False}),
    ("thinking-only assistant turn kept", _req(messages=[
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"}]}]), {
        "model": "m", "messages": [{"role": "assistant", "content": "", "thinking": "hmm"}],
        "options": {"num_predict": 16}, "stream": False}),
    ("unknown blocks ignored", _req(messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "data": "x"}},
        {"type": "text", "text": "hi"}]}]), {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 16}, "stream": False}),
    ("thinking enabled", _req(thinking={"type": "enabled", "budget_tokens": 1024}), {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 16}, "stream": False, "think": True}),
    ("thinking disabled beats effort", _req(thinking={"type": "disabled"},
                                            output_config={"effort": "low"}), {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 16}, "stream": False, "think": False}),
    ("adaptive thinking uses effort", _req(thinking={"type": "adaptive"},
                                           output_config={"effort": " Medium "}), {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 16}, "stream": False, "think": "medium"}),
    ("xhigh effort is high", _req(output_config={"effort": "xhigh"}), {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 16}, "stream": False, "think": "high"}),
    ("unknown effort ignored", _req(output_config={"effort": "extreme"}), {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 16}, "stream": False}),
]

_TOOL = {"name": "f", "input_schema": {"type": "object", "properties": {}}}
_NATIVE_TOOL = {"type": "function", "function": {
    "name": "f", "parameters": {"type": "object", "properties": {}}}}

TOOL_CHOICE_CASES: list[tuple[Any, Any]] = [
    (None, None),
    ({"type": "auto"}, "auto"),
    ({"type": "any", "disable_parallel_tool_use": True}, "required"),
    ({"type": "none"}, "none"),
    ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
]


@pytest.mark.parametrize("name,body,expected", REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES])
def test_messages_request(name: str, body: dict[str, Any], expected: dict[str, Any]) -> None:
    native = a.messages_request(body)
    assert native == expected
    native_requests.parse_chat(native)  # the chat route accepts what we produce


@pytest.mark.parametrize("choice,expected", TOOL_CHOICE_CASES)
def test_tool_choice(choice: Any, expected: Any) -> None:
    body = _req(tools=[_TOOL])
    if choice is not None:
        body["tool_choice"] = choice
    native = a.messages_request(body)
    assert native["tools"] == [_NATIVE_TOOL]
    assert native.get("tool_choice") == expected
    parsed = native_requests.parse_chat(native)
    assert parsed.tool_choice == ("required" if expected not in (None, "auto", "none") and
                                  expected is not None else "auto")
    assert len(parsed.tools) == (0 if expected == "none" else 1)


def test_tool_choice_without_tools_is_dropped() -> None:
    native = a.messages_request(_req(tool_choice={"type": "any"}))
    assert "tool_choice" not in native and "tools" not in native


def test_server_tools_are_not_offered() -> None:
    native = a.messages_request(_req(tools=[
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        {"type": "custom", "name": "web_search", "input_schema": {"type": "object"}}]))
    assert native["tools"] == [{"type": "function", "function": {
        "name": "web_search", "parameters": {"type": "object"}}}]


def test_tool_without_schema_gets_an_empty_object_schema() -> None:
    native = a.messages_request(_req(tools=[{"name": "f", "description": ""}]))
    assert native["tools"] == [_NATIVE_TOOL]


def test_image_data_is_normalised_base64() -> None:
    wrapped = PNG[:8] + "\r\n" + PNG[8:]
    native = a.messages_request(_req(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "data": wrapped}}]}]))
    assert native["messages"] == [{"role": "user", "content": "", "images": [PNG]}]


def test_assistant_tool_results_follow_the_message() -> None:
    native = a.messages_request(_req(messages=[{"role": "assistant", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "r"},
        {"type": "text", "text": "x"}]}]))
    assert [m["role"] for m in native["messages"]] == ["assistant", "tool"]


ERROR_CASES: list[tuple[Any, str]] = [
    ([], "json: cannot unmarshal array into Go value of type anthropic.MessagesRequest"),
    ("x", "json: cannot unmarshal string into Go value of type anthropic.MessagesRequest"),
    (None, "model is required"),
    ({}, "model is required"),
    (_req(model=""), "model is required"),
    (_req(max_tokens=None), "max_tokens is required and must be positive"),
    (_req(max_tokens=0), "max_tokens is required and must be positive"),
    (_req(max_tokens=-1), "max_tokens is required and must be positive"),
    ({"model": "m", "max_tokens": 5}, "messages is required"),
    (_req(messages=[]), "messages is required"),
    (_req(model=3), "json: cannot unmarshal number into Go struct field MessagesRequest.model "
                    "of type string"),
    (_req(max_tokens="5"), "json: cannot unmarshal string into Go struct field "
                           "MessagesRequest.max_tokens of type int"),
    (_req(max_tokens=1.5), "json: cannot unmarshal number 1.5 into Go struct field "
                           "MessagesRequest.max_tokens of type int"),
    (_req(max_tokens=2**64), "json: cannot unmarshal number 18446744073709551616 into Go "
                             "struct field MessagesRequest.max_tokens of type int"),
    (_req(stream="yes"), "json: cannot unmarshal string into Go struct field "
                         "MessagesRequest.stream of type bool"),
    (_req(temperature="hot"), "json: cannot unmarshal string into Go struct field "
                              "MessagesRequest.temperature of type float64"),
    (_req(top_k=1.5), "json: cannot unmarshal number 1.5 into Go struct field "
                      "MessagesRequest.top_k of type int"),
    (_req(stop_sequences="END"), "json: cannot unmarshal string into Go struct field "
                                 "MessagesRequest.stop_sequences of type []string"),
    (_req(stop_sequences=["a", 1]), "json: cannot unmarshal number into Go struct field "
                                    "MessagesRequest.stop_sequences of type string"),
    (_req(tools={"name": "f"}), "json: cannot unmarshal object into Go struct field "
                                "MessagesRequest.tools of type []anthropic.Tool"),
    (_req(tools=["f"]), "json: cannot unmarshal string into Go struct field "
                        "MessagesRequest.tools of type anthropic.Tool"),
    (_req(tools=[{"name": 1}]), "json: cannot unmarshal number into Go struct field "
                                "Tool.tools.name of type string"),
    (_req(tool_choice="auto"), "json: cannot unmarshal string into Go struct field "
                               "MessagesRequest.tool_choice of type anthropic.ToolChoice"),
    (_req(thinking={"type": "enabled", "budget_tokens": "many"}),
     "json: cannot unmarshal string into Go struct field ThinkingConfig.thinking.budget_tokens "
     "of type int"),
    (_req(output_config={"effort": 1}), "json: cannot unmarshal number into Go struct field "
                                        "OutputConfig.output_config.effort of type string"),
    (_req(messages="hi"), "json: cannot unmarshal string into Go struct field "
                          "MessagesRequest.messages of type []anthropic.MessageParam"),
    (_req(messages=["hi"]), "json: cannot unmarshal string into Go struct field "
                            "MessagesRequest.messages of type anthropic.MessageParam"),
    (_req(messages=[None]), "unexpected end of JSON input"),
    (_req(messages=[{"role": "user"}]), "unexpected end of JSON input"),
    (_req(messages=[{"role": 1, "content": "x"}]),
     "json: cannot unmarshal number into Go struct field MessageParam.role of type string"),
    (_req(messages=[{"role": "user", "content": 5}]),
     "json: cannot unmarshal number into Go value of type []anthropic.ContentBlock"),
    (_req(messages=[{"role": "user", "content": ["x"]}]),
     "json: cannot unmarshal string into Go value of type anthropic.ContentBlock"),
    (_req(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]),
     "json: cannot unmarshal number into Go struct field ContentBlock.text of type string"),
    (_req(messages=[{"role": "user", "content": [{"type": "image", "source": {"data": 5}}]}]),
     "json: cannot unmarshal number into Go struct field ImageSource.source.data of type string"),
    (_req(messages=[{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}]),
     "json: cannot unmarshal string into Go struct field ContentBlock.input of type "
     "map[string]interface {}"),
    # type errors come before the required-field checks, as Go decodes first
    ({"messages": [{"role": "user"}]}, "unexpected end of JSON input"),
    # conversion errors (anthropic.FromMessagesRequest)
    (_req(messages=[{"role": "user", "content": [{"type": "image"}]}]), "invalid image source"),
    (_req(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]),
     "invalid image source type: url. Only base64 images are supported."),
    (_req(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "data": "abc!"}}]}]),
     "invalid base64 image data: illegal base64 data at input byte 3"),
    (_req(messages=[{"role": "user", "content": [{"type": "tool_result", "content": [
        {"type": "image", "source": "x"}]}]}]), "invalid tool_result image source"),
    (_req(messages=[{"role": "user", "content": [{"type": "tool_result", "content": [
        {"type": "image", "source": {"type": "url", "url": "u"}}]}]}]),
     "invalid image source type: url. Only base64 images are supported."),
    (_req(messages=[{"role": "assistant", "content": [{"type": "tool_use", "name": "f"}]}]),
     "tool_use block missing required 'id' field"),
    (_req(messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "t"}]}]),
     "tool_use block missing required 'name' field"),
    (_req(tools=[{"name": "f", "input_schema": "x"}]),
     'invalid input_schema for tool "f": json: cannot unmarshal string into Go value of type '
     "api.ToolFunctionParameters"),
    (_req(tools=[_TOOL], tool_choice={"type": "tool"}),
     'tool_choice.name is required when tool_choice.type is "tool"'),
    (_req(tools=[_TOOL], tool_choice={"type": "sometimes"}),
     'invalid tool_choice type "sometimes" (must be "auto", "any", "tool" or "none")'),
]


@pytest.mark.parametrize("body,message", ERROR_CASES, ids=[c[1][:60] for c in ERROR_CASES])
def test_messages_request_errors(body: Any, message: str) -> None:
    with pytest.raises(BadRequest) as exc:
        a.messages_request(body)
    assert exc.value.message == message
    assert exc.value.status_hint == 400


def test_tool_choice_naming_an_unknown_tool_is_refused_by_the_chat_parser() -> None:
    native = a.messages_request(_req(tools=[_TOOL], tool_choice={"type": "tool", "name": "g"}))
    with pytest.raises(BadRequest, match="tool_choice names a tool that was not sent"):
        native_requests.parse_chat(native)


def test_count_tokens_request() -> None:
    body = {"model": "m", "system": "s", "messages": [{"role": "user", "content": "hi"}],
            "tools": [_TOOL], "thinking": {"type": "enabled", "budget_tokens": 10}}
    native = a.count_tokens_request(body)
    assert native == {"model": "m", "messages": [{"role": "system", "content": "s"},
                                                 {"role": "user", "content": "hi"}],
                      "tools": [_NATIVE_TOOL], "think": True, "stream": False}
    native_requests.parse_chat(native)
    assert a.count_tokens_response(7) == {"input_tokens": 7}


@pytest.mark.parametrize("body,message", [
    ({"messages": [{"role": "user", "content": "x"}]}, "model is required"),
    ({"model": "m"}, "messages is required"),
    ([], "json: cannot unmarshal array into Go value of type anthropic.CountTokensRequest"),
])
def test_count_tokens_errors(body: Any, message: str) -> None:
    with pytest.raises(BadRequest) as exc:
        a.count_tokens_request(body)
    assert exc.value.message == message


def test_estimate_input_tokens() -> None:
    # Ollama's len/4: "user" + "hello world!" = 16 bytes → 4
    assert a.estimate_input_tokens(
        {"messages": [{"role": "user", "content": "hello world!"}]}) == 4
    assert a.estimate_input_tokens({"messages": [{"role": "u", "content": ""}]}) == 1
    assert a.estimate_input_tokens({}) == 0
    with_system = {"system": "x" * 40, "messages": [{"role": "user", "content": "hi"}]}
    assert a.estimate_input_tokens(with_system) == 11


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("status,kind", [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (429, "rate_limit_error"), (503, "overloaded_error"),
    (529, "overloaded_error"), (500, "api_error"), (413, "api_error"), (502, "api_error"),
])
def test_error_body(status: int, kind: str) -> None:
    assert a.error_body(status, "boom", "req_1") == {
        "type": "error", "error": {"type": kind, "message": "boom"}, "request_id": "req_1"}


# ---------------------------------------------------------------------------------------------
# Non-streamed responses


def _final(message: dict[str, Any], done_reason: str = "stop", **metrics: int) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "m", "created_at": "2024-01-01T00:00:00Z",
                           "message": {"role": "assistant", **message}, "done": True,
                           "done_reason": done_reason}
    out.update(metrics)
    return out


def test_message_response_text() -> None:
    out = a.message_response(_final({"content": "Hello"}, prompt_eval_count=5, eval_count=2,
                                     total_duration=10), id="msg_1")
    assert out == {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                   "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
                   "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 2}}
    _sdk_message(out)


def test_message_response_thinking_text_and_tools() -> None:
    native = _final({"content": "Checking.", "thinking": "hmm", "tool_calls": [
        {"id": "call_ab12cd34", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}},
        {"function": {"index": 1, "name": "g", "arguments": {}}}]}, "stop")
    out = a.message_response(native, id="msg_9")
    assert out["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": ""},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_ab12cd34", "name": "f", "input": {"x": 1}},
        {"type": "tool_use", "id": "toolu_9_1", "name": "g", "input": {}}]
    assert out["stop_reason"] == "tool_use"
    assert out["usage"] == {"input_tokens": 0, "output_tokens": 0}
    _sdk_message(out)


@pytest.mark.parametrize("done_reason,tools,expected", [
    ("stop", False, "end_turn"), ("length", False, "max_tokens"), ("length", True, "tool_use"),
    ("load", False, "stop_sequence"), ("", False, None),
])
def test_stop_reason(done_reason: str, tools: bool, expected: str | None) -> None:
    assert a.stop_reason(done_reason, tools) == expected


def test_message_response_empty_and_length() -> None:
    out = a.message_response(_final({"content": ""}, "length", eval_count=16), id="msg_2")
    assert out["content"] == [] and out["stop_reason"] == "max_tokens"
    assert out["usage"]["output_tokens"] == 16
    _sdk_message(out)


# ---------------------------------------------------------------------------------------------
# Streaming


def _chunk(content: str = "", thinking: str = "",
           tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        msg["thinking"] = thinking
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return {"model": "m", "created_at": "t", "message": msg, "done": False}


def _done(done_reason: str = "stop", content: str = "",
          tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    line = _chunk(content, tool_calls=tool_calls)
    line.update(done=True, done_reason=done_reason, prompt_eval_count=7, eval_count=3)
    return line


def _run(lines: list[dict[str, Any]], *, start: bool = True) -> list[tuple[str, dict[str, Any]]]:
    stream = a.MessageStream("msg_s", "m", input_tokens=4)
    events = stream.start() if start else []
    for line in lines:
        events += stream.events(line)
    assert stream.done
    assert stream.events(_chunk("late")) == []
    return events


def _shape(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = []
    for kind, data in events:
        assert data["type"] == kind
        if kind == "content_block_start":
            out.append(f"start:{data['content_block']['type']}:{data['index']}")
        elif kind == "content_block_delta":
            out.append(f"delta:{data['delta']['type']}:{data['index']}")
        elif kind == "content_block_stop":
            out.append(f"stop:{data['index']}")
        elif kind == "message_delta":
            out.append(f"message_delta:{data['delta']['stop_reason']}")
        else:
            out.append(kind)
    return out


_CALL = {"id": "call_1", "function": {"index": 0, "name": "f", "arguments": {"a": "<b>"}}}

STREAM_CASES: list[tuple[str, list[dict[str, Any]], list[str], list[dict[str, Any]], str]] = [
    ("text only", [_chunk("Hel"), _chunk("lo"), _done()],
     ["message_start", "start:text:0", "delta:text_delta:0", "delta:text_delta:0", "stop:0",
      "message_delta:end_turn", "message_stop"],
     [{"type": "text", "text": "Hello"}], "end_turn"),
    ("thinking then text", [_chunk(thinking="Let "), _chunk(thinking="me."),
                            _chunk("Hi"), _done(content="!")],
     ["message_start", "start:thinking:0", "delta:thinking_delta:0", "delta:thinking_delta:0",
      "stop:0", "start:text:1", "delta:text_delta:1", "delta:text_delta:1", "stop:1",
      "message_delta:end_turn", "message_stop"],
     [{"type": "thinking", "thinking": "Let me.", "signature": ""},
      {"type": "text", "text": "Hi!"}], "end_turn"),
    ("text then tool_use", [_chunk("Checking."), _chunk(tool_calls=[_CALL]), _done()],
     ["message_start", "start:text:0", "delta:text_delta:0", "stop:0", "start:tool_use:1",
      "delta:input_json_delta:1", "stop:1", "message_delta:tool_use", "message_stop"],
     [{"type": "text", "text": "Checking."},
      {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": "<b>"}}], "tool_use"),
    ("tool_use only, calls on the done line, repeats dropped",
     [_chunk(tool_calls=[_CALL]), _done(tool_calls=[_CALL, {
         "function": {"index": 1, "name": "g", "arguments": {}}}])],
     ["message_start", "start:tool_use:0", "delta:input_json_delta:0", "stop:0",
      "start:tool_use:1", "delta:input_json_delta:1", "stop:1", "message_delta:tool_use",
      "message_stop"],
     [{"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": "<b>"}},
      {"type": "tool_use", "id": "toolu_s_1", "name": "g", "input": {}}], "tool_use"),
    ("thinking then tool_use", [_chunk(thinking="hm"), _done(tool_calls=[_CALL])],
     ["message_start", "start:thinking:0", "delta:thinking_delta:0", "stop:0",
      "start:tool_use:1", "delta:input_json_delta:1", "stop:1", "message_delta:tool_use",
      "message_stop"],
     [{"type": "thinking", "thinking": "hm", "signature": ""},
      {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": "<b>"}}], "tool_use"),
    ("text, thinking, text (Ollama's TextBeforeThinking)",
     [_chunk("---\n"), _chunk(thinking="Let me think."), _done(content="The answer.")],
     ["message_start", "start:text:0", "delta:text_delta:0", "stop:0", "start:thinking:1",
      "delta:thinking_delta:1", "stop:1", "start:text:2", "delta:text_delta:2", "stop:2",
      "message_delta:end_turn", "message_stop"],
     [{"type": "text", "text": "---\n"},
      {"type": "thinking", "thinking": "Let me think.", "signature": ""},
      {"type": "text", "text": "The answer."}], "end_turn"),
    ("length stop", [_chunk("a b"), _done("length")],
     ["message_start", "start:text:0", "delta:text_delta:0", "stop:0",
      "message_delta:max_tokens", "message_stop"],
     [{"type": "text", "text": "a b"}], "max_tokens"),
    ("nothing generated", [_done()],
     ["message_start", "message_delta:end_turn", "message_stop"], [], "end_turn"),
]


@pytest.mark.parametrize("name,lines,shape,content,reason", STREAM_CASES,
                         ids=[c[0] for c in STREAM_CASES])
def test_stream(name: str, lines: list[dict[str, Any]], shape: list[str],
                content: list[dict[str, Any]], reason: str) -> None:
    events = _run(lines)
    assert _shape(events) == shape
    for kind, data in events:
        json.dumps(data)  # plain JSON all the way down
        _sdk_event(data)
    start = events[0][1]
    assert start["message"] == {
        "id": "msg_s", "type": "message", "role": "assistant", "model": "m", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 4, "output_tokens": 0}}
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": reason, "stop_sequence": None}
    assert delta["usage"] == {"input_tokens": 7, "output_tokens": 3}
    final = _sdk_accumulate(events)
    if final is not None:
        assert final["content"] == content
        assert final["stop_reason"] == reason
        assert final["usage"]["input_tokens"] == 7 and final["usage"]["output_tokens"] == 3


def test_stream_tool_block_shapes() -> None:
    events = _run([_done(tool_calls=[_CALL])])
    assert events[1:4] == [
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "call_1", "name": "f", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": '{"a":"\\u003cb\\u003e"}'}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ]


def test_stream_start_is_implicit_and_once() -> None:
    stream = a.MessageStream("msg_x", "m")
    events = stream.events(_chunk("hi"))
    assert [k for k, _ in events] == ["message_start", "content_block_start",
                                      "content_block_delta"]
    assert events[0][1]["message"]["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert stream.start() == []
    assert not stream.done
    assert a.MessageStream.ping() == ("ping", {"type": "ping"})


def test_stream_first_line_prompt_count_is_used_as_ollama_does() -> None:
    stream = a.MessageStream("msg_x", "m", input_tokens=3)
    events = stream.events(_done(content="x"))
    assert events[0][1]["message"]["usage"]["input_tokens"] == 7


def test_stream_native_error_becomes_an_error_event() -> None:
    stream = a.MessageStream("msg_x", "m")
    stream.start()
    stream.events(_chunk("partial"))
    events = stream.events({"error": "runner crashed"})
    assert events == [("error", {"type": "error", "error": {
        "type": "api_error", "message": "runner crashed"}})]
    assert stream.done and stream.events(_done()) == []


# ---------------------------------------------------------------------------------------------
# The anthropic SDK's view (skipped where it is not installed)


def _sdk_message(out: dict[str, Any]) -> None:
    types = pytest.importorskip("anthropic.types")
    msg = types.Message.model_validate(out)
    assert msg.model_dump(exclude_none=True, include=set(out)) | {"stop_sequence": None} == out


_ADAPTER: list[Any] = []


def _sdk_event(data: dict[str, Any]) -> None:
    if not _ADAPTER:
        types = pytest.importorskip("anthropic.types")
        pydantic = pytest.importorskip("pydantic")
        _ADAPTER.append(pydantic.TypeAdapter(types.RawMessageStreamEvent))
    if data["type"] not in ("ping", "error"):
        _ADAPTER[0].validate_python(data)


def _sdk_accumulate(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
    try:
        from anthropic.lib.streaming._messages import accumulate_event
    except ImportError:
        return None
    snapshot = None
    bufs: dict[int, bytes] = {}
    for _, data in events:
        if data["type"] == "ping":
            continue
        snapshot = accumulate_event(
            event=data, current_snapshot=snapshot, json_bufs=bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    out: dict[str, Any] = snapshot.to_dict()
    for block in out["content"]:
        block.pop("parsed_output", None)
    return out


# ---------------------------------------------------------------------------------------------
# The SDK end to end: its client sends the request through messages_request and reads our
# JSON / SSE answers (an httpx mock transport stands in for the route).


def _sdk_client(native_lines: list[dict[str, Any]], seen: list[dict[str, Any]]) -> Any:
    anthropic = pytest.importorskip("anthropic")
    import anthropic._base_client as base

    # the SDK's own HTTP package (httpx, or httpx2 in recent releases)
    httpx = getattr(base, "httpx2", None) or getattr(base, "httpx")

    def handler(request: Any) -> Any:
        body = json.loads(request.content)
        native = a.messages_request(body)
        native_requests.parse_chat(native)
        seen.append(native)
        if not native["stream"]:
            return httpx.Response(200, json=a.message_response(native_lines[-1], id="msg_e2e"))
        stream = a.MessageStream("msg_e2e", body["model"])
        events = stream.start() + [a.MessageStream.ping()]
        for line in native_lines:
            events += stream.events(line)
        sse = "".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n" for kind, data in events)
        return httpx.Response(200, content=sse.encode(),
                              headers={"content-type": "text/event-stream"})

    return anthropic.Anthropic(api_key="k", base_url="http://pollama.test",
                               http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def test_sdk_client_non_streamed() -> None:
    seen: list[dict[str, Any]] = []
    client = _sdk_client([_final({"content": "Hi there", "thinking": "greet"}, "stop",
                                 prompt_eval_count=9, eval_count=2)], seen)
    msg = client.messages.create(model="m", max_tokens=32, system="sys",
                                 messages=[{"role": "user", "content": "hello"}],
                                 stop_sequences=["\n\n"], extra_body={"temperature": 0.2})
    assert seen[0]["messages"][0] == {"role": "system", "content": "sys"}
    assert seen[0]["options"] == {"num_predict": 32, "temperature": 0.2, "stop": ["\n\n"]}
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[1].text == "Hi there" and msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 9 and msg.usage.output_tokens == 2


def test_sdk_client_streamed_tool_call() -> None:
    seen: list[dict[str, Any]] = []
    lines = [_chunk(thinking="need weather"), _chunk("Checking"),
             _done(tool_calls=[{"id": "call_w", "function": {
                 "index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}])]
    client = _sdk_client(lines, seen)
    tools = [{"name": "get_weather", "description": "Weather",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}]
    with client.messages.stream(model="m", max_tokens=64, tools=tools,
                                tool_choice={"type": "any"},
                                thinking={"type": "enabled", "budget_tokens": 1024},
                                messages=[{"role": "user", "content": "Paris?"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert seen[0]["tool_choice"] == "required" and seen[0]["think"] is True
    assert text == "Checking"
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    tool_use = final.content[2]
    assert tool_use.id == "call_w" and tool_use.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
    assert final.usage.input_tokens == 7 and final.usage.output_tokens == 3


# ---------------------------------------------------------------------------------------------
# Robustness: any JSON body is translated or refused with BadRequest; any native-looking line
# streams without an exception.

_hyp = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_scalars = st.none() | st.booleans() | st.integers(-3, 2**65) | st.floats(allow_nan=False) \
    | st.sampled_from(["", "user", "assistant", "text", "image", "tool_use", "tool_result",
                       "thinking", "base64", "url", "enabled", "tool", "any", "f", "AAAA"])
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["type", "text", "source", "data", "id", "name", "input", "content",
                     "tool_use_id", "thinking", "role", "effort", "input_schema"]),
    inner, max_size=5), max_leaves=25)
_bodies = st.fixed_dictionaries({"model": st.just("m"), "max_tokens": st.just(8)}, optional={
    "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                                "content": _json}), max_size=3) | _json,
    "system": _json, "tools": _json, "tool_choice": _json, "thinking": _json,
    "output_config": _json, "stop_sequences": _json, "temperature": _json}) | _json


@settings(max_examples=200)
@given(_bodies)
def test_any_body_is_translated_or_refused(body: Any) -> None:
    for translate in (a.messages_request, a.count_tokens_request):
        try:
            native = translate(body)
        except BadRequest:
            continue
        json.dumps(native)
        try:
            native_requests.parse_chat(native)
        except BadRequest:
            pass


_lines = st.fixed_dictionaries({"message": st.fixed_dictionaries({}, optional={
    "content": st.text(max_size=3), "thinking": st.text(max_size=3),
    "tool_calls": st.lists(st.fixed_dictionaries({}, optional={
        "id": st.sampled_from(["call_1", "call_2", ""]),
        "function": st.fixed_dictionaries({"name": st.text(max_size=2)}, optional={
            "arguments": st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)})}),
        max_size=2)}), "done": st.booleans()}, optional={
    "done_reason": st.sampled_from(["stop", "length", "load"]),
    "prompt_eval_count": st.integers(0, 99), "eval_count": st.integers(0, 99)})


@settings(max_examples=300)
@given(st.lists(_lines, max_size=6))
def test_any_native_stream_gives_a_well_formed_event_sequence(lines: list[dict[str, Any]]) -> None:
    stream = a.MessageStream("msg_h", "m")
    events = stream.start()
    for line in lines:
        events += stream.events(line)
    if not stream.done:
        events += stream.events({"message": {"content": ""}, "done": True, "done_reason": "stop"})
    kinds = [k for k, _ in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    open_index = None
    next_index = 0
    for kind, data in events[1:-2]:
        if kind == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index = next_index
        elif kind == "content_block_delta":
            assert data["index"] == open_index
        else:
            assert kind == "content_block_stop" and data["index"] == open_index
            open_index, next_index = None, next_index + 1
    assert open_index is None
    if _sdk_accumulate(events) is not None:
        for _, data in events:
            _sdk_event(data)
