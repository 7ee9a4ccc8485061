"""The OpenAI-compatible API as a translation to and from the native one (Ollama's openai/openai.go
FromChatRequest and ToModel).

Ollama serves ``/v1/*`` as middleware around its native handlers (``middleware/openai.go``,
``openai/openai.go``): the OpenAI body is decoded into Go structs, rewritten as the native
request, and each native response (object or NDJSON line) is re-encoded. This module is that
translation, pure: ids and timestamps are arguments, nothing is read or written.

*Requests.* ``chat_request``, ``completion_request`` and ``embedding_request`` take the decoded
body and return the JSON ``/api/chat``, ``/api/generate`` and ``/api/embed`` accept (to be
parsed by ``requests.parse_chat`` / ``parse_generate`` and ``embed.parse_embed``). A field of the
wrong JSON type gets Go's decoder message naming Ollama's struct
(``json: cannot unmarshal string into Go struct field ChatCompletionRequest.messages of type
[]openai.Message``); the checks that follow use Ollama's texts, as clients match on them.

*Responses.* ``chat_completion``/``completion`` shape a native final object; ``ChatStream`` and
``CompletionStream`` turn native stream lines into chunk objects, which the route writes as
``sse.encode(json)`` followed by ``sse.DONE``. ``error_body`` is the OpenAI error shape.

Where pollama differs from Ollama on purpose (each marked "pollama:" below): ``max_completion_
tokens`` maps to ``num_predict``; ``tool_choice`` is honoured; assistant ``reasoning_content``
is read when ``reasoning`` is absent; a tool message with content parts keeps its
``tool_call_id``; logprobs always carry ``bytes`` and ``top_logprobs`` as OpenAI's schema
requires; legacy completions return the logprobs they asked for; a native error line
mid-stream becomes an OpenAI error object (Ollama sends an empty chunk).
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import jsonwire
from . import options as opts
from .errors import BadRequest
from .names import DEFAULT_NAMESPACE, parse_name
from .requests import _is_bool, _is_int, _is_obj, _is_str, _ListOf, _unmarshal_error

__all__ = [
    "JSON", "SYSTEM_FINGERPRINT", "ChatStream", "Check", "CompletionStream", "Fields",
    "arguments_json", "chat_completion", "chat_request", "completion", "completion_request",
    "decode_image_url", "embedding_request", "embeddings", "error_body", "go_type",
    "include_usage", "logprobs_out", "model_object", "models_list", "native_message",
    "native_tool_call", "parse_arguments", "think_from_effort", "tool_calls_out", "usage"
]

JSON = dict[str, Any]
Check = Callable[[Any], bool]

SYSTEM_FINGERPRINT = "fp_ollama"

# ---------------------------------------------------------------------------------------------
# Decoding into Ollama's Go structs: field types and Go's messages


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _anything(v: Any) -> bool:
    return True


def _list_of(check: Check) -> _ListOf:
    return _ListOf(check)


_FLOAT32_MAX = 3.4028234663852886e38


def _check(value: Any, where: str, gotype: str, check: Check) -> None:
    """Raise Go's decoder error if ``value`` cannot go into a Go field of ``gotype``
    (``null`` leaves any field at its zero value)."""
    if value is None:
        return
    if gotype == "int" and isinstance(value, float) and not value.is_integer():
        raise opts.number_error(value, where, gotype)  # "number 1.5", as Go quotes it
    if not check(value):
        raise _unmarshal_error(value, where, gotype, check)
    if gotype == "int" and not opts.INT64_MIN <= int(value) <= opts.INT64_MAX:
        raise opts.number_error(value, where, gotype)
    if gotype in ("float64", "float32") and not opts.fits_float64(value):
        raise opts.number_error(value, where, gotype)
    if gotype == "float32" and abs(float(value)) > _FLOAT32_MAX:
        raise opts.number_error(value, where, gotype)


Fields = Mapping[str, tuple[str, Check]]


def _struct(body: Any, struct: str, fields: Fields) -> JSON:
    """The body as Go decodes it into ``openai.<struct>``: ``null`` is the zero struct."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest(
            f"json: cannot unmarshal {opts.json_kind(body)} into Go value of type openai.{struct}")
    _fields(body, struct, fields)
    return body


def _fields(obj: Mapping[str, Any], where: str, fields: Fields) -> None:
    for key, (gotype, check) in fields.items():
        _check(obj.get(key), f"{where}.{key}", gotype, check)


def go_type(value: Any) -> str:
    """Go's ``%T`` of a value decoded into ``any``."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


_STREAM_OPTIONS: Fields = {"include_usage": ("bool", _is_bool)}

_CHAT_FIELDS: Fields = {
    "model": ("string", _is_str),
    "messages": ("[]openai.Message", _list_of(_is_obj)),
    "stream": ("bool", _is_bool),
    "stream_options": ("openai.StreamOptions", _is_obj),
    "max_tokens": ("int", _is_int),
    "max_completion_tokens": ("int", _is_int),
    "seed": ("int", _is_int),
    "stop": ("interface {}", _anything),
    "temperature": ("float64", _is_num),
    "frequency_penalty": ("float64", _is_num),
    "presence_penalty": ("float64", _is_num),
    "top_p": ("float64", _is_num),
    "response_format": ("openai.ResponseFormat", _is_obj),
    "tools": ("[]api.Tool", _list_of(_is_obj)),
    "reasoning": ("openai.Reasoning", _is_obj),
    "reasoning_effort": ("string", _is_str),
    "logprobs": ("bool", _is_bool),
    "top_logprobs": ("int", _is_int),
    "_debug_render_only": ("bool", _is_bool),
}

_MESSAGE_FIELDS: Fields = {
    "role": ("string", _is_str),
    "content": ("interface {}", _anything),
    "reasoning": ("string", _is_str),
    "tool_calls": ("[]openai.ToolCall", _list_of(_is_obj)),
    "name": ("string", _is_str),
    "tool_call_id": ("string", _is_str),
}

_TOOL_CALL_FIELDS: Fields = {
    "id": ("string", _is_str),
    "index": ("int", _is_int),
    "type": ("string", _is_str),
    "function": ('struct { Name string "json:\\"name\\""; Arguments string '
                 '"json:\\"arguments\\"" }', _is_obj),
}

_FUNCTION_FIELDS: Fields = {
    "name": ("string", _is_str),
    "arguments": ("string", _is_str),
}

_COMPLETION_FIELDS: Fields = {
    "model": ("string", _is_str),
    "prompt": ("string", _is_str),
    "frequency_penalty": ("float32", _is_num),
    "max_tokens": ("int", _is_int),
    "presence_penalty": ("float32", _is_num),
    "seed": ("int", _is_int),
    "stop": ("interface {}", _anything),
    "stream": ("bool", _is_bool),
    "stream_options": ("openai.StreamOptions", _is_obj),
    "temperature": ("float32", _is_num),
    "top_p": ("float32", _is_num),
    "suffix": ("string", _is_str),
    "logprobs": ("int", _is_int),
    "_debug_render_only": ("bool", _is_bool),
}

_EMBED_FIELDS: Fields = {
    "input": ("interface {}", _anything),
    "model": ("string", _is_str),
    "dimensions": ("int", _is_int),
    "encoding_format": ("string", _is_str),
}


def include_usage(body: Any) -> bool:
    """``stream_options.include_usage`` of a chat or completions body (false when absent)."""
    so = body.get("stream_options") if isinstance(body, dict) else None
    return isinstance(so, dict) and so.get("include_usage") is True


# ---------------------------------------------------------------------------------------------
# Shared pieces of request translation (also used by openai_responses)


_IMAGE_TYPES = ("jpeg", "jpg", "png", "webp")


def decode_image_url(url: str) -> str:
    """A ``data:`` image URL → the native ``images`` entry (standard base64). Ollama takes
    ``data:image/(jpeg|jpg|png|webp);base64,`` and the bare ``data:;base64,``; remote URLs are
    refused rather than fetched."""
    if url.startswith(("http://", "https://")):
        raise BadRequest("image URLs are not currently supported, please use base64 encoded "
                         "data instead")
    prefixes = ["data:;base64,"] + [f"data:image/{t};base64," for t in _IMAGE_TYPES]
    for prefix in prefixes:
        if url.startswith(prefix):
            try:
                raw = jsonwire.go_base64_decode(url[len(prefix):])
            except BadRequest:
                raise BadRequest("invalid image input") from None
            return base64.b64encode(raw).decode("ascii")
    raise BadRequest("invalid image input")


_EFFORTS: Mapping[str, bool | str] = {
    "none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high",
    "max": "max", "xhigh": "max", "ultra": "max",
}


def think_from_effort(effort: str) -> bool | str | None:
    """OpenAI ``reasoning_effort`` → native ``think``: "" leaves the model's default; the ends
    of OpenAI's scale (and clients' own tiers) clamp to Ollama's."""
    if not effort:
        return None
    if effort in _EFFORTS:
        return _EFFORTS[effort]
    raise BadRequest(f"invalid reasoning value: {jsonwire.go_quote(effort)} (must be "
                     '"minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")')


def parse_arguments(text: str) -> dict[str, Any]:
    """A tool call's JSON ``arguments`` string → the native arguments object. ``null`` is an
    empty object; anything else that is not an object raises BadRequest with Go's text."""
    value = jsonwire.loads_request(text.encode("utf-8", "surrogatepass"))
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"json: cannot unmarshal {opts.json_kind(value)} into Go value of type "
                         "map[string]interface {}")
    return value


def native_message(role: str, content: str = "", *, images: Iterable[str] = (),
                   thinking: str = "", tool_calls: Iterable[JSON] = (), tool_name: str = "",
                   tool_call_id: str = "") -> JSON:
    """A native ``api.Message`` in its wire order, empty optional fields left out."""
    msg: JSON = {"role": role, "content": content}
    if images := list(images):
        msg["images"] = images
    if thinking:
        msg["thinking"] = thinking
    if tool_calls := list(tool_calls):
        msg["tool_calls"] = tool_calls
    if tool_name:
        msg["tool_name"] = tool_name
    if tool_call_id:
        msg["tool_call_id"] = tool_call_id
    return msg


def native_tool_call(call_id: str, index: int, name: str, arguments: dict[str, Any]) -> JSON:
    fn = {"index": index, "name": name, "arguments": arguments}
    return {"id": call_id, "function": fn} if call_id else {"function": fn}


# ---------------------------------------------------------------------------------------------
# /v1/chat/completions request


def chat_request(body: Any) -> JSON:
    """An OpenAI chat completions body → the native ``/api/chat`` body."""
    obj = _struct(body, "ChatCompletionRequest", _CHAT_FIELDS)
    raw_messages: list[Any] = obj.get("messages") or []
    for m in raw_messages:
        _check_message(m)
    for key, sub in (("stream_options", _STREAM_OPTIONS),
                     ("response_format", {"type": ("string", _is_str),
                                          "json_schema": ("openai.JsonSchema", _is_obj)}),
                     ("reasoning", {"effort": ("string", _is_str)})):
        if isinstance(obj.get(key), dict):
            _fields(obj[key], f"ChatCompletionRequest.{key}", sub)
    if not raw_messages:
        raise BadRequest("[] is too short - 'messages'")

    messages = _chat_messages(raw_messages)

    options: JSON = {}
    stop = obj.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list):
        # Ollama skips non-string entries here (completions refuses them)
        if stops := [s for s in stop if isinstance(s, str)]:
            options["stop"] = stops
    # pollama: max_completion_tokens (OpenAI's current name) as well; it wins over max_tokens
    max_tokens = obj.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = obj.get("max_tokens")
    if max_tokens is not None:
        options["num_predict"] = int(max_tokens)
    # OpenAI's defaults, not the model's: Ollama sets 1.0 when the client sends nothing
    options["temperature"] = _float(obj.get("temperature"), 1.0)
    if obj.get("seed") is not None:
        options["seed"] = int(obj["seed"])
    for key in ("frequency_penalty", "presence_penalty"):
        if obj.get(key) is not None:
            options[key] = float(obj[key])
    options["top_p"] = _float(obj.get("top_p"), 1.0)

    native: JSON = {"model": obj.get("model") or "", "messages": messages}
    fmt = _response_format(obj.get("response_format"))
    if fmt is not None:
        native["format"] = fmt
    native["options"] = options
    native["stream"] = bool(obj.get("stream") or False)
    if obj.get("tools"):
        native["tools"] = list(obj["tools"])
    if obj.get("tool_choice") is not None:
        native["tool_choice"] = obj["tool_choice"]  # pollama: honoured (Ollama ignores it)
    reasoning = obj.get("reasoning")
    effort = (reasoning.get("effort") if isinstance(reasoning, dict)
              else obj.get("reasoning_effort")) or ""
    think = think_from_effort(effort)
    if think is not None:
        native["think"] = think
    if obj.get("logprobs") is True:
        native["logprobs"] = True
    if obj.get("top_logprobs"):
        native["top_logprobs"] = int(obj["top_logprobs"])
    if obj.get("_debug_render_only") is True:
        native["_debug_render_only"] = True
    return native


def _float(value: Any, default: float) -> float:
    return default if value is None else float(value)


def _response_format(rf: Any) -> Any:
    if not isinstance(rf, dict):
        return None
    kind = (rf.get("type") or "").strip().lower()
    if kind == "json_object":
        return "json"
    if kind == "json_schema" and isinstance(rf.get("json_schema"), dict):
        return rf["json_schema"].get("schema")
    return None


def _check_message(m: Any) -> None:
    where = "ChatCompletionRequest.messages"
    if m is None:
        return
    _fields(m, where, _MESSAGE_FIELDS)
    for call in m.get("tool_calls") or ():
        if call is None:
            continue
        _fields(call, f"{where}.tool_calls", _TOOL_CALL_FIELDS)
        if isinstance(call.get("function"), dict):
            _fields(call["function"], f"{where}.tool_calls.function", _FUNCTION_FIELDS)


def _chat_messages(raw: list[Any]) -> list[JSON]:
    out: list[JSON] = []
    for m in raw:
        m = m or {}
        role: str = m.get("role") or ""
        content = m.get("content")
        thinking = m.get("reasoning") or ""
        if not thinking and isinstance(m.get("reasoning_content"), str):
            thinking = m["reasoning_content"]  # pollama: the DeepSeek/vLLM spelling too
        raw_calls = m.get("tool_calls")
        tool_call_id: str = m.get("tool_call_id") or ""
        tool_name = ""
        if role.lower() == "tool":
            tool_name = m.get("name") or ""
            if not tool_name and tool_call_id:
                tool_name = _tool_name_for(raw, tool_call_id)
        if isinstance(content, str):
            out.append(native_message(role, content, thinking=thinking,
                                      tool_calls=_tool_calls_in(raw_calls), tool_name=tool_name,
                                      tool_call_id=tool_call_id))
        elif isinstance(content, list):
            # each part becomes its own message, as Ollama does
            parts = [_content_part(role, p) for p in content]
            calls = _tool_calls_in(raw_calls)
            # pollama: what belongs to the whole message goes on its last part even without
            # tool calls (Ollama drops a tool message's tool_call_id then)
            if calls or thinking or tool_name or tool_call_id:
                last = parts.pop() if parts else native_message(role)
                parts.append(native_message(
                    role, last["content"], images=last.get("images", ()), thinking=thinking,
                    tool_calls=calls, tool_name=tool_name, tool_call_id=tool_call_id))
            out.extend(parts)
        else:
            # content may be absent only when the message carries tool calls
            if raw_calls is None:
                raise BadRequest(f"invalid message content type: {go_type(content)}")
            out.append(native_message(role, "", thinking=thinking,
                                      tool_calls=_tool_calls_in(raw_calls), tool_name=tool_name,
                                      tool_call_id=tool_call_id))
    return out


def _tool_name_for(raw: list[Any], call_id: str) -> str:
    """The function name of the last earlier tool call with this id (last one wins on
    duplicates, as Ollama's nameFromToolCallID)."""
    for m in reversed(raw):
        for call in (m or {}).get("tool_calls") or ():
            if (call or {}).get("id") == call_id:
                fn = call.get("function") or {}
                return str(fn.get("name") or "")
    return ""


def _tool_calls_in(raw_calls: Any) -> list[JSON]:
    out: list[JSON] = []
    for i, call in enumerate(raw_calls or ()):
        call = call or {}
        fn = call.get("function") or {}
        try:
            args = parse_arguments(fn.get("arguments") or "")
        except BadRequest:
            raise BadRequest("invalid tool call arguments") from None
        out.append(native_tool_call(call.get("id") or "", i, fn.get("name") or "", args))
    return out


def _content_part(role: str, part: Any) -> JSON:
    if not isinstance(part, dict):
        raise BadRequest("invalid message format")
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise BadRequest("invalid message format")
        return native_message(role, text)
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise BadRequest("invalid message format")
        return native_message(role, images=[decode_image_url(url)])
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict):
            raise BadRequest("invalid input_audio format")
        data = audio.get("data")
        if not isinstance(data, str):
            raise BadRequest("invalid input_audio format: missing data")
        try:
            raw = jsonwire.go_base64_decode(data)
        except BadRequest as exc:
            raise BadRequest(f"invalid input_audio base64 data: {exc.message}") from None
        return native_message(role, images=[base64.b64encode(raw).decode("ascii")])
    raise BadRequest("invalid message format")


# ---------------------------------------------------------------------------------------------
# /v1/completions and /v1/embeddings requests


def completion_request(body: Any) -> JSON:
    """An OpenAI (legacy) completions body → the native ``/api/generate`` body."""
    obj = _struct(body, "CompletionRequest", _COMPLETION_FIELDS)
    if isinstance(obj.get("stream_options"), dict):
        _fields(obj["stream_options"], "CompletionRequest.stream_options", _STREAM_OPTIONS)
    options: JSON = {}
    stop = obj.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list):
        for s in stop:
            if not isinstance(s, str):
                raise BadRequest(f"invalid type for 'stop' field: {go_type(s)}")
        if stop:
            options["stop"] = list(stop)
    if obj.get("max_tokens") is not None:
        options["num_predict"] = int(obj["max_tokens"])
    options["temperature"] = _float(obj.get("temperature"), 1.0)
    if obj.get("seed") is not None:
        options["seed"] = int(obj["seed"])
    # plain float32 fields in Ollama's struct: always sent, 0 when absent
    options["frequency_penalty"] = _float(obj.get("frequency_penalty"), 0.0)
    options["presence_penalty"] = _float(obj.get("presence_penalty"), 0.0)
    options["top_p"] = _float(obj.get("top_p"), 0.0) or 1.0

    native: JSON = {"model": obj.get("model") or "", "prompt": obj.get("prompt") or ""}
    if obj.get("suffix"):
        native["suffix"] = obj["suffix"]
    native["stream"] = bool(obj.get("stream") or False)
    native["options"] = options
    logprobs = obj.get("logprobs")
    if logprobs is not None and int(logprobs) > 0:
        native["logprobs"] = True
        native["top_logprobs"] = int(logprobs)
    if obj.get("_debug_render_only") is True:
        native["_debug_render_only"] = True
    return native


def embedding_request(body: Any) -> tuple[JSON, str]:
    """An OpenAI embeddings body → (the native ``/api/embed`` body, ``"float"`` or
    ``"base64"``)."""
    obj = _struct(body, "EmbedRequest", _EMBED_FIELDS)
    encoding: str = obj.get("encoding_format") or ""
    if encoding and encoding.lower() not in ("float", "base64"):
        raise BadRequest(f"Invalid value for 'encoding_format' = {encoding}. Supported values: "
                         "['float', 'base64'].")
    value = obj.get("input")
    if value == "":
        value = [""]
    if value is None or value == []:
        raise BadRequest("invalid input")
    native: JSON = {"model": obj.get("model") or "", "input": value}
    if obj.get("dimensions"):
        native["dimensions"] = int(obj["dimensions"])
    return native, encoding.lower() or "float"


# ---------------------------------------------------------------------------------------------
# Responses


def error_body(status: int, message: str) -> JSON:
    """OpenAI's error object; the HTTP status is kept and names the type. pollama: a 401 (its
    API key, which Ollama does not have) is OpenAI's own ``invalid_api_key``."""
    if status == 401:
        return {"error": {"message": message, "type": "invalid_request_error", "param": None,
                          "code": "invalid_api_key"}}
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def usage(native: Mapping[str, Any]) -> JSON:
    prompt = int(native.get("prompt_eval_count") or 0)
    completion = int(native.get("eval_count") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def arguments_json(arguments: Any) -> str:
    """Native arguments (an object) → OpenAI's JSON string, as Go's json.Marshal writes it."""
    return jsonwire.dumps(arguments if arguments is not None else {}).decode("utf-8")


def tool_calls_out(native_calls: Any) -> list[JSON]:
    """Native ``message.tool_calls`` → OpenAI's ``tool_calls`` (arguments as a JSON string)."""
    out: list[JSON] = []
    for call in native_calls or ():
        fn = call.get("function") or {}
        out.append({"id": call.get("id") or "", "index": int(fn.get("index") or 0),
                    "type": "function",
                    "function": {"name": fn.get("name") or "",
                                 "arguments": arguments_json(fn.get("arguments"))}})
    return out


def _token_logprob(entry: Mapping[str, Any]) -> JSON:
    # pollama: bytes and top_logprobs always present (OpenAI's schema requires them)
    return {"token": entry.get("token") or "", "logprob": float(entry.get("logprob") or 0.0),
            "bytes": entry.get("bytes")}


def logprobs_out(entries: Any) -> JSON | None:
    """Native ``logprobs`` → a chat choice's ``logprobs`` (``{"content": [...]}``)."""
    if not entries:
        return None
    content = []
    for e in entries:
        item = _token_logprob(e)
        item["top_logprobs"] = [_token_logprob(t) for t in e.get("top_logprobs") or ()]
        content.append(item)
    return {"content": content}


def _finish_reason(native: Mapping[str, Any], tool_calls: bool) -> str | None:
    reason = native.get("done_reason") or ""
    if reason == "stop" and tool_calls:
        reason = "tool_calls"
    return reason or None


def chat_completion(native_final: Mapping[str, Any], *, id: str, created: int) -> JSON:
    """A native non-streamed ``/api/chat`` response → an OpenAI ``chat.completion``."""
    msg = native_final.get("message") or {}
    calls = tool_calls_out(msg.get("tool_calls"))
    message: JSON = {"role": msg.get("role") or "assistant", "content": msg.get("content") or ""}
    if msg.get("thinking"):
        message["reasoning"] = msg["thinking"]
    if calls:
        message["tool_calls"] = calls
    choice: JSON = {"index": 0, "message": message,
                    "finish_reason": _finish_reason(native_final, bool(calls))}
    if (lp := logprobs_out(native_final.get("logprobs"))) is not None:
        choice["logprobs"] = lp
    out: JSON = {"id": id, "object": "chat.completion", "created": created,
                 "model": native_final.get("model") or "",
                 "system_fingerprint": SYSTEM_FINGERPRINT, "choices": [choice],
                 "usage": usage(native_final)}
    if native_final.get("_debug_info"):
        out["_debug_info"] = native_final["_debug_info"]
    return out


class ChatStream:
    """Native ``/api/chat`` stream lines → ``chat.completion.chunk`` objects (Ollama HEAD).

    The first chunk's delta carries ``role``; a line with both thinking and content (or tool
    calls) is split into a reasoning chunk and a content chunk; the final (``done``) line gives
    a chunk with an empty delta and ``finish_reason``, then, with ``include_usage``, a chunk with
    ``choices: []`` and ``usage``. A final line with nothing in it (the metrics trailer) adds no
    content chunk. After ``finished`` the route writes ``sse.DONE`` (unless ``failed``).
    """

    def __init__(self, id: str, created: int, model: str, include_usage: bool = False) -> None:
        self.id = id
        self.created = created
        self.model = model
        self.include_usage = include_usage
        self.finished = False
        self.failed = False
        self._started = False
        self._tool_calls_sent = False

    def _chunk(self, delta: JSON, *, finish_reason: str | None = None,
               logprobs: JSON | None = None) -> JSON:
        choice: JSON = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        if logprobs is not None:
            choice["logprobs"] = logprobs
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [choice]}

    def chunk(self, native: Mapping[str, Any]) -> list[JSON]:
        if self.finished:
            return []
        if native.get("error") is not None and not native.get("done"):
            # pollama: OpenAI's in-stream error object (the SDKs raise it); Ollama sends an
            # empty chunk and leaves the stream unfinished
            self.finished = self.failed = True
            return [error_body(500, str(native["error"]))]
        msg = native.get("message") or {}
        content: str = msg.get("content") or ""
        thinking: str = msg.get("thinking") or ""
        calls = tool_calls_out(msg.get("tool_calls"))
        logprobs = logprobs_out(native.get("logprobs"))
        done = bool(native.get("done"))
        out: list[JSON] = []
        trailer = done and self._started and not (content or thinking or calls or logprobs)
        if not trailer:
            role: JSON = {} if self._started else {"role": "assistant"}
            if thinking and (content or calls):
                out.append(self._chunk({**role, "reasoning": thinking}, logprobs=logprobs))
                out.append(self._chunk(_delta(content, "", calls)))
            else:
                out.append(self._chunk({**role, **_delta(content, thinking, calls)},
                                       logprobs=logprobs))
            self._started = True
            self._tool_calls_sent = self._tool_calls_sent or bool(calls)
        if done:
            reason = native.get("done_reason") or "stop"
            if reason == "stop" and self._tool_calls_sent:
                reason = "tool_calls"
            out.append(self._chunk({}, finish_reason=reason))
            if self.include_usage:
                final = self._chunk({})
                final["choices"] = []
                final["usage"] = usage(native)
                out.append(final)
            self.finished = True
        return out


def _delta(content: str, thinking: str, calls: list[JSON]) -> JSON:
    delta: JSON = {"content": content}
    if thinking:
        delta["reasoning"] = thinking
    if calls:
        delta["tool_calls"] = calls
    return delta


def _legacy_logprobs(entries: Any, offset: int) -> tuple[JSON, int]:
    """Native logprobs → the completions API's ``{"tokens", "token_logprobs", "top_logprobs",
    "text_offset"}``; offsets count characters of the completion text from ``offset``."""
    tokens: list[str] = []
    token_logprobs: list[float] = []
    top: list[dict[str, float]] = []
    offsets: list[int] = []
    for e in entries:
        token = e.get("token") or ""
        tokens.append(token)
        token_logprobs.append(float(e.get("logprob") or 0.0))
        top.append({t.get("token") or "": float(t.get("logprob") or 0.0)
                    for t in e.get("top_logprobs") or ()})
        offsets.append(offset)
        offset += len(token)
    return ({"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top,
             "text_offset": offsets}, offset)


def _completion_choice(native: Mapping[str, Any], offset: int) -> tuple[JSON, int]:
    choice: JSON = {"text": native.get("response") or "", "index": 0,
                    "finish_reason": native.get("done_reason") or None}
    if native.get("logprobs"):
        # pollama: Ollama accepts logprobs here but never returns them
        choice["logprobs"], offset = _legacy_logprobs(native["logprobs"], offset)
    return choice, offset


def completion(native_final: Mapping[str, Any], *, id: str, created: int) -> JSON:
    """A native non-streamed ``/api/generate`` response → an OpenAI ``text_completion``."""
    choice, _ = _completion_choice(native_final, 0)
    return {"id": id, "object": "text_completion", "created": created,
            "model": native_final.get("model") or "", "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [choice], "usage": usage(native_final)}


class CompletionStream:
    """Native ``/api/generate`` stream lines → ``text_completion`` chunks (Ollama's
    openai/openai.go FromCompleteRequest): one chunk per line, ``finish_reason`` on the final one;
    with ``include_usage`` every chunk carries a zeroed ``usage`` and a last chunk has
    ``choices: []`` and the real usage."""

    def __init__(self, id: str, created: int, model: str, include_usage: bool = False) -> None:
        self.id = id
        self.created = created
        self.model = model
        self.include_usage = include_usage
        self.finished = False
        self.failed = False
        self._offset = 0

    def _chunk(self, choices: list[JSON], use: JSON) -> JSON:
        out: JSON = {"id": self.id, "object": "text_completion", "created": self.created,
                     "choices": choices, "model": self.model,
                     "system_fingerprint": SYSTEM_FINGERPRINT}
        if self.include_usage:
            out["usage"] = use
        return out

    def chunk(self, native: Mapping[str, Any]) -> list[JSON]:
        if self.finished:
            return []
        if native.get("error") is not None and not native.get("done"):
            self.finished = self.failed = True  # pollama: see ChatStream.chunk
            return [error_body(500, str(native["error"]))]
        choice, self._offset = _completion_choice(native, self._offset)
        out = [self._chunk([choice], usage({}))]
        if native.get("done"):
            if self.include_usage:
                out.append(self._chunk([], usage(native)))
            self.finished = True
        return out


def _float32_le(vector: Iterable[float]) -> bytes:
    out = bytearray()
    for v in vector:
        try:
            out += struct.pack("<f", v)
        except OverflowError:  # past float32: Go's conversion gives infinity
            out += struct.pack("<f", math.copysign(math.inf, v))
    return bytes(out)


def embeddings(native_embed_response: Mapping[str, Any], encoding_format: str,
               model: str) -> JSON:
    """A native ``/api/embed`` response → an OpenAI embeddings list; ``base64`` is the
    little-endian float32 bytes of each vector."""
    data: list[JSON] = []
    for i, vector in enumerate(native_embed_response.get("embeddings") or ()):
        value: Any = vector
        if encoding_format.lower() == "base64":
            value = base64.b64encode(_float32_le(vector)).decode("ascii")
        data.append({"object": "embedding", "embedding": value, "index": i})
    tokens = int(native_embed_response.get("prompt_eval_count") or 0)
    # Go's nil slice: "data" is null when there are no vectors
    return {"object": "list", "data": data or None, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _namespace(name: str) -> str:
    """``owned_by``: the name's namespace, as Go's ParseName gives it (it validates nothing,
    so an odd name still has one)."""
    try:
        return parse_name(name).namespace
    except BadRequest:
        rest = name
        if rest.rfind(":") > rest.rfind("/"):
            rest = rest[: rest.rfind(":")]
        pieces = rest.rsplit("/", 2)
        return (pieces[-2] if len(pieces) > 1 else "") or DEFAULT_NAMESPACE


def model_object(name: str, modified_unix: int) -> JSON:
    """One ``/v1/models`` entry (also ``/v1/models/{model}``, where ``id`` echoes the path)."""
    return {"id": name, "object": "model", "created": modified_unix,
            "owned_by": _namespace(name)}


def models_list(entries: Iterable[tuple[str, int]]) -> JSON:
    """``/v1/models`` from ``(name, modified unix time)`` pairs; ``data`` is null when there are
    none (Go's nil slice, still so at Ollama HEAD)."""
    data = [model_object(name, modified) for name, modified in entries]
    return {"object": "list", "data": data or None}
