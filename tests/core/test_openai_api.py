"""core/openai_api.py: request translation, response shaping, stream chunk sequences.

Shapes are checked against the openai SDK's pydantic models where the SDK validates them."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import embed, jsonwire, sse
from pollama.core import openai_api as oa
from pollama.core import requests as rq
from pollama.core.errors import BadRequest, PollamaError

openai = pytest.importorskip("openai")
from openai.types import Completion, CreateEmbeddingResponse, Model  # noqa: E402
from openai.types.chat import ChatCompletion, ChatCompletionChunk  # noqa: E402

PNG = "data:image/png;base64,aGk="
USER = {"role": "user", "content": "hi"}


def chat(**kw: Any) -> dict[str, Any]:
    return oa.chat_request({"model": "m", "messages": [USER], **kw})


# ---------------------------------------------------------------------------------------------
# chat request: every error message

CHAT_ERRORS: list[tuple[Any, str]] = [
    ([1], "json: cannot unmarshal array into Go value of type openai.ChatCompletionRequest"),
    ("x", "json: cannot unmarshal string into Go value of type openai.ChatCompletionRequest"),
    (None, "[] is too short - 'messages'"),
    ({}, "[] is too short - 'messages'"),
    ({"model": "m", "messages": []}, "[] is too short - 'messages'"),
    ({"messages": "hi"}, "json: cannot unmarshal string into Go struct field "
                         "ChatCompletionRequest.messages of type []openai.Message"),
    ({"messages": ["hi"]}, "json: cannot unmarshal string into Go struct field "
                           "ChatCompletionRequest.messages of type openai.Message"),
    ({"model": 1, "messages": [USER]}, "json: cannot unmarshal number into Go struct field "
                                       "ChatCompletionRequest.model of type string"),
    ({"messages": [USER], "stream": "yes"}, "json: cannot unmarshal string into Go struct "
                                            "field ChatCompletionRequest.stream of type bool"),
    ({"messages": [USER], "max_tokens": 1.5}, "json: cannot unmarshal number 1.5 into Go "
                                              "struct field ChatCompletionRequest.max_tokens "
                                              "of type int"),
    ({"messages": [USER], "max_tokens": 2**70},
     f"json: cannot unmarshal number {2**70} into Go struct field "
     "ChatCompletionRequest.max_tokens of type int"),
    ({"messages": [USER], "temperature": "hot"},
     "json: cannot unmarshal string into Go struct field ChatCompletionRequest.temperature of "
     "type float64"),
    ({"messages": [USER], "response_format": "json"},
     "json: cannot unmarshal string into Go struct field ChatCompletionRequest.response_format "
     "of type openai.ResponseFormat"),
    ({"messages": [USER], "stream_options": {"include_usage": 1}},
     "json: cannot unmarshal number into Go struct field "
     "ChatCompletionRequest.stream_options.include_usage of type bool"),
    ({"messages": [USER], "tools": [1]}, "json: cannot unmarshal number into Go struct field "
                                         "ChatCompletionRequest.tools of type api.Tool"),
    ({"messages": [USER], "reasoning": {"effort": 1}},
     "json: cannot unmarshal number into Go struct field "
     "ChatCompletionRequest.reasoning.effort of type string"),
    ({"messages": [{"role": 1, "content": "x"}]},
     "json: cannot unmarshal number into Go struct field ChatCompletionRequest.messages.role "
     "of type string"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"function": {"name": "f", "arguments": {"a": 1}}}]}]},
     "json: cannot unmarshal object into Go struct field "
     "ChatCompletionRequest.messages.tool_calls.function.arguments of type string"),
    ({"messages": [{"role": "user", "content": 2}]}, "invalid message content type: float64"),
    ({"messages": [{"role": "user"}]}, "invalid message content type: <nil>"),
    ({"messages": [None]}, "invalid message content type: <nil>"),
    ({"messages": [{"role": "user", "content": True}]}, "invalid message content type: bool"),
    ({"messages": [{"role": "user", "content": {"a": 1}}]},
     "invalid message content type: map[string]interface {}"),
    ({"messages": [{"role": "user", "content": ["x"]}]}, "invalid message format"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "invalid message format"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "invalid message format"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "invalid message format"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}]},
     "invalid message format"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
     "image URLs are not currently supported, please use base64 encoded data instead"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": "http://x/y.png"}]}]},
     "image URLs are not currently supported, please use base64 encoded data instead"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": "data:image/gif;base64,aGk="}]}]},
     "invalid image input"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": "data:image/png;base64,a!"}]}]},
     "invalid image input"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "invalid input_audio format"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "invalid input_audio format: missing data"),
    ({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "a!=="}}]}]},
     "invalid input_audio base64 data: illegal base64 data at input byte 1"),
    ({"messages": [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "c", "function": {"name": "f", "arguments": "{nope"}}]}]},
     "invalid tool call arguments"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "function": {"name": "f"}}]}]},
     "invalid tool call arguments"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}]},
     "invalid tool call arguments"),
    ({"messages": [USER], "reasoning_effort": "extreme"},
     'invalid reasoning value: "extreme" (must be "minimal", "low", "medium", "high", '
     '"xhigh", "ultra", "max", or "none")'),
    ({"messages": [USER], "reasoning": {"effort": "lots"}},
     'invalid reasoning value: "lots" (must be "minimal", "low", "medium", "high", '
     '"xhigh", "ultra", "max", or "none")'),
]


@pytest.mark.parametrize(("body", "message"), CHAT_ERRORS)
def test_chat_request_errors(body: Any, message: str) -> None:
    with pytest.raises(BadRequest) as exc:
        oa.chat_request(body)
    assert exc.value.message == message
    assert exc.value.status_hint == 400


# ---------------------------------------------------------------------------------------------
# chat request: translation table

CHAT_CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({}, {"model": "m", "messages": [USER], "options": {"temperature": 1.0, "top_p": 1.0},
          "stream": False}),
    ({"stream": True, "temperature": 0.2, "top_p": 0.5, "seed": 7, "frequency_penalty": 0.1,
      "presence_penalty": 0.3},
     {"options": {"temperature": 0.2, "top_p": 0.5, "seed": 7, "frequency_penalty": 0.1,
                  "presence_penalty": 0.3}, "stream": True}),
    ({"max_tokens": 5}, {"options": {"num_predict": 5, "temperature": 1.0, "top_p": 1.0}}),
    ({"max_completion_tokens": 9}, {"options": {"num_predict": 9, "temperature": 1.0,
                                                "top_p": 1.0}}),
    ({"max_tokens": 5, "max_completion_tokens": 9},
     {"options": {"num_predict": 9, "temperature": 1.0, "top_p": 1.0}}),
    ({"stop": "x"}, {"options": {"stop": ["x"], "temperature": 1.0, "top_p": 1.0}}),
    ({"stop": ["x", 1, "y"]}, {"options": {"stop": ["x", "y"], "temperature": 1.0,
                                           "top_p": 1.0}}),
    ({"stop": []}, {"options": {"temperature": 1.0, "top_p": 1.0}}),
    ({"stop": 5}, {"options": {"temperature": 1.0, "top_p": 1.0}}),
    ({"response_format": {"type": "json_object"}}, {"format": "json"}),
    ({"response_format": {"type": " JSON_Object "}}, {"format": "json"}),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object"}}}}, {"format": {"type": "object"}}),
    ({"response_format": {"type": "json_schema"}}, {"format": None}),
    ({"response_format": {"type": "text"}}, {"format": None}),
    ({"reasoning_effort": "none"}, {"think": False}),
    ({"reasoning_effort": "minimal"}, {"think": "low"}),
    ({"reasoning_effort": "high"}, {"think": "high"}),
    ({"reasoning_effort": "xhigh"}, {"think": "max"}),
    ({"reasoning_effort": "ultra"}, {"think": "max"}),
    ({"reasoning_effort": ""}, {"think": None}),
    ({"reasoning": {"effort": "medium"}, "reasoning_effort": "high"}, {"think": "medium"}),
    ({"reasoning": {}, "reasoning_effort": "high"}, {"think": None}),
    ({"logprobs": True, "top_logprobs": 3}, {"logprobs": True, "top_logprobs": 3}),
    ({"logprobs": False}, {"logprobs": None}),
    ({"_debug_render_only": True}, {"_debug_render_only": True}),
    ({"tool_choice": "none"}, {"tool_choice": "none"}),
    ({"tools": [], "n": 3, "user": "u", "logit_bias": {}}, {"tools": None}),
]


@pytest.mark.parametrize(("extra", "want"), CHAT_CASES)
def test_chat_request_translation(extra: dict[str, Any], want: dict[str, Any]) -> None:
    native = chat(**extra)
    for key, value in want.items():
        assert native.get(key) == value, key
    rq.parse_chat(native)  # the native parser accepts what we produce


def test_chat_messages_translation() -> None:
    native = oa.chat_request({"model": "m", "messages": [
        {"role": "system", "content": "s"},
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": PNG}},
            {"type": "image_url", "image_url": "data:;base64,aG\nk="},
            {"type": "input_audio", "input_audio": {"data": "AAEC"}}]},
        {"role": "assistant", "content": None, "reasoning": "hmm", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "put",
                                                              "arguments": "null"}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": "ok"},
        {"role": "TOOL", "tool_call_id": "call_1", "name": "explicit", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_9", "content": "?"},
        {"role": "assistant", "content": "done", "reasoning_content": "r"},
    ]})
    assert native["messages"] == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "look"},
        {"role": "user", "content": "", "images": ["aGk="]},
        {"role": "user", "content": "", "images": ["aGk="]},
        {"role": "user", "content": "", "images": ["AAEC"]},
        {"role": "assistant", "content": "", "thinking": "hmm", "tool_calls": [
            {"id": "call_1", "function": {"index": 0, "name": "get",
                                          "arguments": {"city": "Paris"}}},
            {"id": "call_2", "function": {"index": 1, "name": "put", "arguments": {}}}]},
        {"role": "tool", "content": "ok", "tool_name": "put", "tool_call_id": "call_2"},
        {"role": "TOOL", "content": "sunny", "tool_name": "explicit", "tool_call_id": "call_1"},
        {"role": "tool", "content": "?", "tool_call_id": "call_9"},
        {"role": "assistant", "content": "done", "thinking": "r"},
    ]
    parsed = rq.parse_chat(native)
    assert parsed.messages[7].role == "tool"


def test_chat_parts_carry_message_fields_on_the_last_part() -> None:
    native = oa.chat_request({"messages": [
        {"role": "assistant", "content": "x", "tool_calls": [
            {"id": "a", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "a", "content": [{"type": "text", "text": "1"},
                                                          {"type": "text", "text": "2"}]},
        {"role": "assistant", "content": [], "tool_calls": [
            {"id": "b", "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "user", "content": []},
    ]})
    assert native["messages"][1:] == [
        {"role": "tool", "content": "1"},
        {"role": "tool", "content": "2", "tool_name": "f", "tool_call_id": "a"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "b", "function": {"index": 0, "name": "g", "arguments": {}}}]},
    ]


def test_chat_tools_pass_through_and_tool_choice_reaches_native() -> None:
    tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {
        "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
        "additionalProperties": False}, "strict": True}}]
    native = chat(tools=tools, tool_choice={"type": "function", "function": {"name": "f"}})
    assert native["tools"] == tools
    parsed = rq.parse_chat(native)
    assert parsed.tool_choice == "required" and len(parsed.tools) == 1


def test_include_usage() -> None:
    assert oa.include_usage({"stream_options": {"include_usage": True}})
    assert not oa.include_usage({"stream_options": {}})
    assert not oa.include_usage({"stream_options": None})
    assert not oa.include_usage([])


def test_image_url_decoding() -> None:
    for t in ("jpeg", "jpg", "png", "webp"):
        assert oa.decode_image_url(f"data:image/{t};base64,aGk=") == "aGk="
    assert oa.decode_image_url("data:;base64,") == ""


# ---------------------------------------------------------------------------------------------
# completions request

COMPLETION_ERRORS: list[tuple[Any, str]] = [
    ({"model": "m", "prompt": "Hello", "stop": [1, 2], "suffix": "suffix"},
     "invalid type for 'stop' field: float64"),
    ({"stop": ["a", None]}, "invalid type for 'stop' field: <nil>"),
    ({"stop": ["a", ["b"]]}, "invalid type for 'stop' field: []interface {}"),
    ({"prompt": ["a", "b"]}, "json: cannot unmarshal array into Go struct field "
                             "CompletionRequest.prompt of type string"),
    ({"logprobs": True}, "json: cannot unmarshal bool into Go struct field "
                         "CompletionRequest.logprobs of type int"),
    ({"temperature": 1e39}, "json: cannot unmarshal number 1e+39 into Go struct field "
                            "CompletionRequest.temperature of type float32"),
    ([], "json: cannot unmarshal array into Go value of type openai.CompletionRequest"),
]


@pytest.mark.parametrize(("body", "message"), COMPLETION_ERRORS)
def test_completion_request_errors(body: Any, message: str) -> None:
    with pytest.raises(BadRequest) as exc:
        oa.completion_request(body)
    assert exc.value.message == message


def test_completion_request_translation() -> None:
    assert oa.completion_request({"model": "m", "prompt": "Hello"}) == {
        "model": "m", "prompt": "Hello", "stream": False,
        "options": {"temperature": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0,
                    "top_p": 1.0}}
    native = oa.completion_request({
        "model": "m", "prompt": "p", "suffix": "s", "max_tokens": 3, "temperature": 0.0,
        "top_p": 0.0, "seed": 1, "stop": ["a", "b"], "stream": True, "logprobs": 2,
        "frequency_penalty": 0.5, "_debug_render_only": True})
    assert native == {
        "model": "m", "prompt": "p", "suffix": "s", "stream": True,
        "options": {"stop": ["a", "b"], "num_predict": 3, "temperature": 0.0, "seed": 1,
                    "frequency_penalty": 0.5, "presence_penalty": 0.0, "top_p": 1.0},
        "logprobs": True, "top_logprobs": 2, "_debug_render_only": True}
    rq.parse_generate(native)
    assert "logprobs" not in oa.completion_request({"logprobs": 0})
    assert oa.completion_request({"stop": "x"})["options"]["stop"] == ["x"]
    assert "stop" not in oa.completion_request({"stop": []})["options"]


# ---------------------------------------------------------------------------------------------
# embeddings request


@pytest.mark.parametrize(("body", "message"), [
    ({"model": "m"}, "invalid input"),
    ({"model": "m", "input": None}, "invalid input"),
    ({"model": "m", "input": []}, "invalid input"),
    ({"model": "m", "input": "x", "encoding_format": "int8"},
     "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64']."),
    ({"model": "m", "input": "x", "dimensions": "8"},
     "json: cannot unmarshal string into Go struct field EmbedRequest.dimensions of type int"),
    (7, "json: cannot unmarshal number into Go value of type openai.EmbedRequest"),
])
def test_embedding_request_errors(body: Any, message: str) -> None:
    with pytest.raises(BadRequest) as exc:
        oa.embedding_request(body)
    assert exc.value.message == message


def test_embedding_request_translation() -> None:
    assert oa.embedding_request({"model": "m", "input": ""}) == (
        {"model": "m", "input": [""]}, "float")
    native, fmt = oa.embedding_request({"model": "m", "input": ["a", "b"], "dimensions": 4,
                                        "encoding_format": "BASE64"})
    assert native == {"model": "m", "input": ["a", "b"], "dimensions": 4} and fmt == "base64"
    assert embed.parse_embed(native).inputs == ("a", "b")
    # token arrays pass to the native parser, which refuses them as Ollama does
    native, _ = oa.embedding_request({"model": "m", "input": [[1, 2]]})
    with pytest.raises(BadRequest, match="invalid input type"):
        embed.parse_embed(native)


# ---------------------------------------------------------------------------------------------
# response shaping


def native_chat(**kw: Any) -> dict[str, Any]:
    msg = {"role": "assistant", "content": kw.pop("content", "")}
    for key in ("thinking", "tool_calls"):
        if key in kw:
            msg[key] = kw.pop(key)
    out: dict[str, Any] = {"model": "m", "created_at": "2026-01-01T00:00:00Z", "message": msg,
                           "done": kw.pop("done", True)}
    out.update(kw)
    return out


CALL = {"id": "call_ab12cd34", "function": {"index": 0, "name": "f",
                                            "arguments": {"a": "<b>", "n": 1}}}


def test_chat_completion_shape() -> None:
    native = native_chat(content="Hello", thinking="because", done_reason="stop",
                         prompt_eval_count=3, eval_count=2, total_duration=10)
    out = oa.chat_completion(native, id="chatcmpl-1", created=1700000000)
    assert out == {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "m",
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello",
                                             "reasoning": "because"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    ChatCompletion.model_validate(out)


def test_chat_completion_tool_calls_and_logprobs() -> None:
    native = native_chat(tool_calls=[CALL], done_reason="stop", logprobs=[
        {"token": "a", "logprob": -0.5, "bytes": [97],
         "top_logprobs": [{"token": "a", "logprob": -0.5, "bytes": [97]},
                          {"token": "b", "logprob": -1.0}]},
        {"token": "c", "logprob": -0.1}])
    out = oa.chat_completion(native, id="x", created=1)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [
        {"id": "call_ab12cd34", "index": 0, "type": "function",
         "function": {"name": "f", "arguments": '{"a":"\\u003cb\\u003e","n":1}'}}]
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "a": "<b>", "n": 1}
    assert choice["logprobs"]["content"][1] == {"token": "c", "logprob": -0.1, "bytes": None,
                                                "top_logprobs": []}
    ChatCompletion.model_validate(out)


@pytest.mark.parametrize(("reason", "calls", "want"), [
    ("stop", False, "stop"), ("length", False, "length"), ("length", True, "length"),
    ("stop", True, "tool_calls"), ("", False, None)])
def test_chat_completion_finish_reason(reason: str, calls: bool, want: str | None) -> None:
    native = native_chat(done_reason=reason, **({"tool_calls": [CALL]} if calls else {}))
    assert oa.chat_completion(native, id="x", created=1)["choices"][0]["finish_reason"] == want


def test_chat_completion_debug_info() -> None:
    native = native_chat(_debug_info={"rendered_template": "t", "image_count": 0})
    assert oa.chat_completion(native, id="x", created=1)["_debug_info"]["rendered_template"] \
        == "t"


def test_completion_shape() -> None:
    native = {"model": "m", "created_at": "x", "response": "Hi", "done": True,
              "done_reason": "length", "prompt_eval_count": 4, "eval_count": 1}
    out = oa.completion(native, id="cmpl-1", created=5)
    assert out == {"id": "cmpl-1", "object": "text_completion", "created": 5, "model": "m",
                   "system_fingerprint": "fp_ollama",
                   "choices": [{"text": "Hi", "index": 0, "finish_reason": "length"}],
                   "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}}
    Completion.model_validate(out)
    native["logprobs"] = [{"token": "H", "logprob": -0.2, "top_logprobs": [
        {"token": "H", "logprob": -0.2}, {"token": "h", "logprob": -2.0}]},
        {"token": "i", "logprob": -0.1}]
    out = oa.completion(native, id="cmpl-1", created=5)
    assert out["choices"][0]["logprobs"] == {
        "tokens": ["H", "i"], "token_logprobs": [-0.2, -0.1],
        "top_logprobs": [{"H": -0.2, "h": -2.0}, {}], "text_offset": [0, 1]}
    Completion.model_validate(out)


def test_embeddings_float_and_base64() -> None:
    native = {"model": "m", "embeddings": [[0.5, -0.25], [1.0, 0.0]], "prompt_eval_count": 6}
    out = oa.embeddings(native, "float", "m")
    assert out == {"object": "list", "data": [
        {"object": "embedding", "embedding": [0.5, -0.25], "index": 0},
        {"object": "embedding", "embedding": [1.0, 0.0], "index": 1}],
        "model": "m", "usage": {"prompt_tokens": 6, "total_tokens": 6}}
    CreateEmbeddingResponse.model_validate(out)
    b64 = oa.embeddings(native, "base64", "m")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(b64)) == (0.5, -0.25)
    assert oa.embeddings({"embeddings": [[1e39]]}, "base64", "m")["data"][0]["embedding"] == \
        base64.b64encode(struct.pack("<f", float("inf"))).decode()
    assert oa.embeddings({"embeddings": []}, "float", "m")["data"] is None


def test_models() -> None:
    assert oa.models_list([]) == {"object": "list", "data": None}
    out = oa.models_list([("llama3.2:latest", 100), ("hf.co/bartowski/x:Q4_K_M", 200),
                          ("me/mine:1b", 300)])
    assert out == {"object": "list", "data": [
        {"id": "llama3.2:latest", "object": "model", "created": 100, "owned_by": "library"},
        {"id": "hf.co/bartowski/x:Q4_K_M", "object": "model", "created": 200,
         "owned_by": "bartowski"},
        {"id": "me/mine:1b", "object": "model", "created": 300, "owned_by": "me"}]}
    for m in out["data"]:
        Model.model_validate(m)
    assert oa.model_object("bad name!/x", 1)["owned_by"] == "bad name!"
    assert oa.model_object("", 1)["owned_by"] == "library"


@pytest.mark.parametrize(("status", "kind"), [(400, "invalid_request_error"),
                                              (404, "not_found_error"), (500, "api_error"),
                                              (503, "api_error"), (413, "api_error")])
def test_error_body(status: int, kind: str) -> None:
    assert oa.error_body(status, "model 'x' not found") == {
        "error": {"message": "model 'x' not found", "type": kind, "param": None, "code": None}}


# ---------------------------------------------------------------------------------------------
# streams


def frames(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(sse.encode(jsonwire.dumps(c)) for c in chunks) + sse.DONE


def run_chat(lines: list[dict[str, Any]], include_usage: bool = False) -> list[dict[str, Any]]:
    stream = oa.ChatStream("chatcmpl-1", 1700000000, "m", include_usage)
    out: list[dict[str, Any]] = []
    for line in lines:
        out += stream.chunk(line)
    assert stream.finished
    for c in out:
        assert c["created"] == 1700000000 and c["id"] == "chatcmpl-1"
        ChatCompletionChunk.model_validate(c)
    return out


def deltas(chunks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks
            if c["choices"]]


def test_chat_stream_content_then_trailer_with_usage() -> None:
    out = run_chat([native_chat(content="Hel", done=False), native_chat(content="lo", done=False),
                    native_chat(done_reason="stop", prompt_eval_count=3, eval_count=2)],
                   include_usage=True)
    assert deltas(out) == [({"role": "assistant", "content": "Hel"}, None),
                           ({"content": "lo"}, None), ({}, "stop")]
    assert out[-1]["choices"] == [] and out[-1]["usage"] == {
        "prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    wire = frames(out)
    assert b'"delta":{}' in wire and b'"choices":[]' in wire


def test_chat_stream_mixed_line_is_split() -> None:
    out = run_chat([native_chat(thinking="reasoning", content="final answer",
                                done_reason="stop", prompt_eval_count=3, eval_count=2,
                                logprobs=[{"token": "x", "logprob": -1.0}])],
                   include_usage=True)
    assert len(out) == 4
    assert deltas(out) == [({"role": "assistant", "reasoning": "reasoning"}, None),
                           ({"content": "final answer"}, None), ({}, "stop")]
    assert "logprobs" in out[0]["choices"][0] and "logprobs" not in out[1]["choices"][0]
    assert out[3]["usage"]["total_tokens"] == 5


def test_chat_stream_thinking_then_tool_calls() -> None:
    out = run_chat([native_chat(thinking="plan", done=False),
                    native_chat(thinking="more", tool_calls=[CALL], done=False),
                    native_chat(done_reason="stop")])
    d = deltas(out)
    assert d[0] == ({"role": "assistant", "content": "", "reasoning": "plan"}, None)
    assert d[1] == ({"reasoning": "more"}, None)
    assert d[2][0]["tool_calls"][0]["function"] == {"name": "f",
                                                    "arguments": '{"a":"\\u003cb\\u003e","n":1}'}
    assert d[2][0]["content"] == ""
    assert d[-1] == ({}, "tool_calls")


@pytest.mark.parametrize(("reason", "want"), [("length", "length"), ("", "stop"),
                                              ("stop", "stop")])
def test_chat_stream_finish_reasons(reason: str, want: str) -> None:
    out = run_chat([native_chat(content="partial", done_reason=reason)])
    assert deltas(out) == [({"role": "assistant", "content": "partial"}, None), ({}, want)]


def test_chat_stream_empty_completion_still_opens_with_role() -> None:
    out = run_chat([native_chat(done_reason="stop")])
    assert deltas(out) == [({"role": "assistant", "content": ""}, None), ({}, "stop")]


def test_chat_stream_final_logprobs_not_dropped_as_trailer() -> None:
    out = run_chat([native_chat(content="Hi", done=False),
                    native_chat(done_reason="stop", logprobs=[{"token": "Hi",
                                                               "logprob": -0.1}])])
    assert len(out) == 3
    assert out[1]["choices"][0]["logprobs"]["content"][0]["logprob"] == -0.1


def test_chat_stream_ignores_lines_after_done_and_reports_errors() -> None:
    stream = oa.ChatStream("c", 1, "m")
    assert stream.chunk(native_chat(done_reason="stop"))
    assert stream.chunk(native_chat(content="late")) == []
    stream = oa.ChatStream("c", 1, "m")
    stream.chunk(native_chat(content="a", done=False))
    assert stream.chunk({"error": "llama runner process has terminated"}) == [
        oa.error_body(500, "llama runner process has terminated")]
    assert stream.finished and stream.failed


def run_completion(lines: list[dict[str, Any]], include_usage: bool) -> list[dict[str, Any]]:
    stream = oa.CompletionStream("cmpl-1", 9, "m", include_usage)
    out: list[dict[str, Any]] = []
    for line in lines:
        out += stream.chunk(line)
    assert stream.finished
    return out


GEN = [{"model": "m", "created_at": "x", "response": "He", "done": False},
       {"model": "m", "created_at": "x", "response": "y", "done": False},
       {"model": "m", "created_at": "x", "response": "", "done": True, "done_reason": "stop",
        "prompt_eval_count": 2, "eval_count": 2}]


def test_completion_stream() -> None:
    out = run_completion(GEN, include_usage=False)
    assert [c["choices"][0]["text"] for c in out] == ["He", "y", ""]
    assert [c["choices"][0]["finish_reason"] for c in out] == [None, None, "stop"]
    assert all("usage" not in c for c in out)
    assert all(c["object"] == "text_completion" and c["created"] == 9 for c in out)
    Completion.model_validate(out[-1])


def test_completion_stream_with_usage() -> None:
    out = run_completion(GEN, include_usage=True)
    assert len(out) == 4
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert [c["usage"] for c in out[:3]] == [zero] * 3
    assert out[3]["choices"] == [] and out[3]["usage"]["total_tokens"] == 4


def test_completion_stream_logprob_offsets_accumulate() -> None:
    lines = [{"response": "He", "done": False, "logprobs": [{"token": "He", "logprob": -1.0}]},
             {"response": "y", "done": True, "done_reason": "stop",
              "logprobs": [{"token": "y", "logprob": -2.0}]}]
    out = run_completion(lines, include_usage=False)
    assert [c["choices"][0]["logprobs"]["text_offset"] for c in out] == [[0], [2]]


# ---------------------------------------------------------------------------------------------
# properties


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                     allow_infinity=False) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(
                         ["model", "messages", "role", "content", "tool_calls", "function",
                          "arguments", "type", "text", "image_url", "url", "stop", "stream",
                          "max_tokens", "reasoning", "effort", "input", "prompt",
                          "response_format", "json_schema", "schema", "tools"]), inner,
                         max_size=4), max_leaves=12)


@given(_json)
def test_any_body_gives_a_native_body_or_our_error(body: Any) -> None:
    for translate, parse in ((oa.chat_request, rq.parse_chat),
                             (oa.completion_request, rq.parse_generate)):
        try:
            native = translate(body)
        except PollamaError:
            continue
        try:
            parse(json.loads(jsonwire.dumps(native)))
        except PollamaError:
            pass
    try:
        oa.embedding_request(body)
    except PollamaError:
        pass


def test_error_body_for_a_wrong_api_key_is_openais() -> None:
    assert oa.error_body(401, "unauthorized")["error"] == {
        "message": "unauthorized", "type": "invalid_request_error", "param": None,
        "code": "invalid_api_key"}
