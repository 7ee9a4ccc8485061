"""Anthropic's Messages API ⇄ the native /api/chat JSON (Ollama's anthropic/anthropic.go).

Ollama serves ``POST /v1/messages`` as a middleware around its chat handler
(``anthropic/anthropic.go``, ``middleware/anthropic.go``): the request is translated to an
``api.ChatRequest``, the handler runs, and every native line it writes is translated back. This
module is that translation and nothing else: the route decodes the body, calls
``messages_request`` (or ``count_tokens_request``), hands the native dict to the chat service,
and shapes what comes back with ``message_response`` or a ``MessageStream``. Ids are arguments;
nothing here reads a clock or a random source.

Where pollama differs from Ollama, on purpose:

- ``tool_choice`` is honoured (Ollama decodes and ignores it): ``auto``, ``any`` (a call is
  forced), ``tool`` (that tool is forced), ``none`` (no tools offered). pollama's native chat
  supports it (core/requests.py).
- A ``tool_result`` also carries ``tool_name``, the name of the ``tool_use`` it answers, so chat
  templates that print a tool's name have it (Ollama sets only ``tool_call_id``).
- Anthropic's server tools (``web_search_*``) are not offered to the model: Ollama runs web
  searches through ollama.com; pollama has no search, and a client expecting a server-side
  result cannot act on a ``tool_use`` for it.
- Thinking blocks carry ``"signature": ""`` (Ollama omits the field; the SDK's ``ThinkingBlock``
  requires it). ``stop_sequence`` is always present (null), as Anthropic sends it.
- An empty answer has ``"content": []`` (Go writes its nil slice as ``null``).
- In a stream, thinking that arrives after text opens a new thinking block (Ollama drops it
  once text has followed thinking), and a native error line becomes an SSE ``error`` event
  (Ollama decodes it as an empty chunk and the stream just ends).

A stop caused by one of the client's ``stop_sequences`` is reported as ``end_turn`` with
``stop_sequence: null``, as Ollama does: the native ``done_reason`` is ``stop`` for both an
end-of-generation token and a stop sequence, so which one ended the turn is not known here.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from . import jsonwire
from . import options as opts
from .errors import BadRequest

__all__ = [
    "Check", "Decoded", "Event", "MessageStream", "count_tokens_request", "count_tokens_response",
    "error_body", "error_type", "estimate_input_tokens", "message_response", "messages_request",
    "stop_reason"
]

Event = tuple[str, dict[str, Any]]

# ---------------------------------------------------------------------------------------------
# Errors (anthropic.NewError)

_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status (``api_error`` for anything unlisted)."""
    return _ERROR_TYPES.get(status, "api_error")


def error_body(status: int, message: str, request_id: str) -> dict[str, Any]:
    """``{"type":"error","error":{"type","message"},"request_id"}`` for a failed request."""
    return {"type": "error", "error": {"type": error_type(status), "message": message},
            "request_id": request_id}


# ---------------------------------------------------------------------------------------------
# Go decoding checks: a wrong type gets the message Go's encoding/json gives for the struct
# Ollama decodes into (``json: cannot unmarshal string into Go struct field
# MessagesRequest.max_tokens of type int``). Go names the innermost struct and the full path.

Check = Callable[[Any], bool]


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_obj(v: Any) -> bool:
    return isinstance(v, dict)


def _is_list(v: Any) -> bool:
    return isinstance(v, list)


def _is_float(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return _is_float(v) and (isinstance(v, int) or v.is_integer())


def _type_error(value: Any, field: str, gotype: str) -> BadRequest:
    if _is_float(value) and gotype in ("int", "float64"):
        return opts.number_error(value, field, gotype)
    return BadRequest(f"json: cannot unmarshal {opts.json_kind(value)} into Go struct field "
                      f"{field} of type {gotype}")


def _check_number(value: Any, field: str, gotype: str) -> None:
    """A JSON number Go cannot hold in ``gotype`` (a fraction in an int, past int64/float64)."""
    if gotype == "int" and not (_is_int(value) and opts.INT64_MIN <= value <= opts.INT64_MAX):
        raise _type_error(value, field, gotype)
    if gotype == "float64" and not opts.fits_float64(value):
        raise _type_error(value, field, gotype)


def _check_fields(obj: Mapping[str, Any], struct: str, prefix: str,
                  spec: Mapping[str, tuple[str, Check]]) -> None:
    """Check ``obj``'s known fields in document order; ``null`` leaves a field zero, as in Go."""
    for key, value in obj.items():
        entry = spec.get(key)
        if entry is None or value is None:
            continue
        gotype, check = entry
        where = f"{struct}.{prefix}{key}"
        if gotype == "[]string" and isinstance(value, list):
            for item in value:
                if item is not None and not isinstance(item, str):
                    raise _type_error(item, where, "string")
            continue
        if not check(value):
            raise _type_error(value, where, gotype)
        if gotype in ("int", "float64"):
            _check_number(value, where, gotype)


_REQUEST_FIELDS: Mapping[str, tuple[str, Check]] = {
    "model": ("string", _is_str),
    "max_tokens": ("int", _is_int),
    "messages": ("[]anthropic.MessageParam", _is_list),
    "stream": ("bool", _is_bool),
    "temperature": ("float64", _is_float),
    "top_p": ("float64", _is_float),
    "top_k": ("int", _is_int),
    "stop_sequences": ("[]string", _is_list),
    "tools": ("[]anthropic.Tool", _is_list),
    "tool_choice": ("anthropic.ToolChoice", _is_obj),
    "thinking": ("anthropic.ThinkingConfig", _is_obj),
    "metadata": ("anthropic.Metadata", _is_obj),
    "output_config": ("anthropic.OutputConfig", _is_obj),
}

_NESTED: Mapping[str, tuple[str, Mapping[str, tuple[str, Check]]]] = {
    "tool_choice": ("ToolChoice", {"type": ("string", _is_str), "name": ("string", _is_str),
                                   "disable_parallel_tool_use": ("bool", _is_bool)}),
    "thinking": ("ThinkingConfig", {"type": ("string", _is_str),
                                    "budget_tokens": ("int", _is_int)}),
    "metadata": ("Metadata", {"user_id": ("string", _is_str)}),
    "output_config": ("OutputConfig", {"effort": ("string", _is_str)}),
}

_TOOL_FIELDS: Mapping[str, tuple[str, Check]] = {
    "type": ("string", _is_str), "name": ("string", _is_str),
    "description": ("string", _is_str), "max_uses": ("int", _is_int),
}

# Message content is decoded by MessageParam.UnmarshalJSON with a fresh json.Unmarshal into
# []ContentBlock, so Go's paths start at the block.
_BLOCK_FIELDS: Mapping[str, tuple[str, Check]] = {
    "type": ("string", _is_str), "text": ("string", _is_str),
    "citations": ("[]anthropic.Citation", _is_list), "source": ("anthropic.ImageSource", _is_obj),
    "id": ("string", _is_str), "name": ("string", _is_str),
    "tool_use_id": ("string", _is_str), "is_error": ("bool", _is_bool),
    "thinking": ("string", _is_str), "signature": ("string", _is_str),
}

_SOURCE_FIELDS: Mapping[str, tuple[str, Check]] = {
    "type": ("string", _is_str), "media_type": ("string", _is_str),
    "data": ("string", _is_str), "url": ("string", _is_str),
}


Decoded = tuple[dict[str, Any], list[tuple[str, list[dict[str, Any]]]]]


def _decode(body: Any, struct: str) -> Decoded:
    """The body as Ollama's ShouldBindJSON sees it, with each message as (role, blocks). Go
    decodes everything before any check runs, so its type errors come first; ``null`` is an
    empty struct."""
    if body is None:
        return {}, []
    if not isinstance(body, dict):
        raise BadRequest(f"json: cannot unmarshal {opts.json_kind(body)} into Go value of type "
                         f"anthropic.{struct}")
    _check_fields(body, struct, "", _REQUEST_FIELDS)
    for key, (inner, spec) in _NESTED.items():
        value = body.get(key)
        if isinstance(value, dict):
            _check_fields(value, inner, f"{key}.", spec)
    for tool in body.get("tools") or ():
        if tool is None:
            continue
        if not isinstance(tool, dict):
            raise _type_error(tool, f"{struct}.tools", "anthropic.Tool")
        _check_fields(tool, "Tool", "tools.", _TOOL_FIELDS)
    messages = [_message_param(raw, struct) for raw in body.get("messages") or ()]
    return body, messages


def _message_param(raw: Any, struct: str) -> tuple[str, list[dict[str, Any]]]:
    """MessageParam.UnmarshalJSON: (role, blocks); string content is one text block."""
    if raw is None:  # UnmarshalJSON(null) finds no content either
        raise BadRequest("unexpected end of JSON input")
    if not isinstance(raw, dict):
        raise _type_error(raw, f"{struct}.messages", "anthropic.MessageParam")
    role = raw.get("role")
    if role is not None and not isinstance(role, str):
        raise _type_error(role, "MessageParam.role", "string")
    if "content" not in raw:
        raise BadRequest("unexpected end of JSON input")  # json.Unmarshal of an absent field
    content = raw["content"]
    if content is None or isinstance(content, str):
        return role or "", [{"type": "text", "text": content or ""}]
    if not isinstance(content, list):
        raise BadRequest(f"json: cannot unmarshal {opts.json_kind(content)} into Go value of "
                         "type []anthropic.ContentBlock")
    blocks: list[dict[str, Any]] = []
    for block in content:
        if block is None:
            continue
        if not isinstance(block, dict):
            raise BadRequest(f"json: cannot unmarshal {opts.json_kind(block)} into Go value of "
                             "type anthropic.ContentBlock")
        _check_fields(block, "ContentBlock", "", _BLOCK_FIELDS)
        if isinstance(block.get("source"), dict):
            _check_fields(block["source"], "ImageSource", "source.", _SOURCE_FIELDS)
        if block.get("input") is not None and not isinstance(block["input"], dict):
            raise _type_error(block["input"], "ContentBlock.input", "map[string]interface {}")
        blocks.append(block)
    return role or "", blocks


# ---------------------------------------------------------------------------------------------
# Requests (anthropic.FromMessagesRequest)


def messages_request(body: Any) -> dict[str, Any]:
    """An Anthropic ``POST /v1/messages`` body → the native /api/chat request dict.

    Raises BadRequest with Ollama's messages: ``model is required``, ``max_tokens is required
    and must be positive``, ``messages is required``, and the block-level errors below.
    """
    obj, messages = _decode(body, "MessagesRequest")
    if not obj.get("model"):
        raise BadRequest("model is required")
    max_tokens = obj.get("max_tokens") or 0
    if max_tokens <= 0:
        raise BadRequest("max_tokens is required and must be positive")
    if not obj.get("messages"):
        raise BadRequest("messages is required")
    native = _chat(obj, messages)
    options: dict[str, Any] = {"num_predict": int(max_tokens)}
    for key in ("temperature", "top_p", "top_k"):
        if obj.get(key) is not None:
            options[key] = int(obj[key]) if key == "top_k" else obj[key]
    stops = [s or "" for s in obj.get("stop_sequences") or ()]
    if stops:
        options["stop"] = stops
    native["options"] = options
    native["stream"] = bool(obj.get("stream") or False)
    return native


def count_tokens_request(body: Any) -> dict[str, Any]:
    """An Anthropic ``POST /v1/messages/count_tokens`` body → a native /api/chat request dict
    whose rendered prompt the route tokenizes (Ollama has no such route; its len/4 estimate
    is ``estimate_input_tokens``). Sampling fields do not change the prompt and are dropped."""
    obj, messages = _decode(body, "CountTokensRequest")
    if not obj.get("model"):
        raise BadRequest("model is required")
    if not obj.get("messages"):
        raise BadRequest("messages is required")
    native = _chat(obj, messages)
    native["stream"] = False
    return native


def count_tokens_response(input_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens}


def _chat(obj: Mapping[str, Any], params: list[tuple[str, list[dict[str, Any]]]]
          ) -> dict[str, Any]:
    messages = _system(obj.get("system"))
    tool_names: dict[str, str] = {}  # tool_use id → name, for the tool results that follow
    for role, blocks in params:
        messages.extend(_convert_message(role, blocks, tool_names))
    native: dict[str, Any] = {"model": obj["model"], "messages": messages}
    tools = [_tool(t) for t in obj.get("tools") or () if t is not None and not _server_tool(t)]
    if tools:
        native["tools"] = tools
        choice = _tool_choice(obj.get("tool_choice"))
        if choice is not None:
            native["tool_choice"] = choice
    think = _think(obj.get("thinking"), obj.get("output_config"))
    if think is not None:
        native["think"] = think
    return native


def _system(system: Any) -> list[dict[str, Any]]:
    """``system``: a string, or text blocks joined without a separator (as Ollama does).
    Anything else is ignored, as Ollama's ``any`` field ignores it."""
    if isinstance(system, str):
        text = system
    elif isinstance(system, list):
        text = "".join(b["text"] for b in system if isinstance(b, dict)
                       and b.get("type") == "text" and isinstance(b.get("text"), str))
    else:
        text = ""
    return [{"role": "system", "content": text}] if text else []


def _convert_message(role: str, blocks: list[dict[str, Any]], tool_names: dict[str, str]
                     ) -> list[dict[str, Any]]:
    """One Anthropic message → native messages (anthropic.convertMessage). A user message's
    tool results come first, as separate ``tool`` messages; a message left with no text,
    image, tool call or thinking is dropped."""
    role = role.lower()
    text: list[str] = []
    images: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking = ""
    results: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text") or "")
        elif kind == "image":
            if not isinstance(block.get("source"), dict):
                raise BadRequest("invalid image source")
            images.append(_image(block["source"]))
        elif kind == "tool_use":
            if not block.get("id"):
                raise BadRequest("tool_use block missing required 'id' field")
            if not block.get("name"):
                raise BadRequest("tool_use block missing required 'name' field")
            tool_names[block["id"]] = block["name"]
            arguments = block.get("input") or {}
            calls.append({"id": block["id"],
                          "function": {"name": block["name"], "arguments": arguments}})
        elif kind == "tool_result":
            content, result_images = _tool_result_content(block.get("content"))
            result: dict[str, Any] = {"role": "tool", "content": content}
            if result_images:
                result["images"] = result_images
            use_id = block.get("tool_use_id") or ""
            if use_id in tool_names:
                result["tool_name"] = tool_names[use_id]
            if use_id:
                result["tool_call_id"] = use_id
            results.append(result)
        elif kind == "thinking":
            if block.get("thinking") is not None:
                thinking = block["thinking"]  # the last one, as Ollama keeps it
        # other blocks (document, redacted_thinking, server tool blocks, ...) are ignored,
        # as Ollama ignores the ones it does not know
    out: list[dict[str, Any]] = []
    if role == "user":
        out.extend(results)
    joined = "".join(text)
    if joined or images or calls or thinking:
        msg: dict[str, Any] = {"role": role, "content": joined}
        if images:
            msg["images"] = images
        if calls:
            msg["tool_calls"] = calls
        if thinking:
            msg["thinking"] = thinking
        out.append(msg)
    if role != "user":
        out.extend(results)
    return out


def _image(source: Mapping[str, Any]) -> str:
    """A base64 image source → native image data (anthropic.resolveImageSource)."""
    kind = source.get("type") or ""
    if kind != "base64":
        raise BadRequest(f"invalid image source type: {kind}. Only base64 images are supported.")
    try:
        data = jsonwire.go_base64_decode(source.get("data") or "")
    except BadRequest as exc:
        raise BadRequest(f"invalid base64 image data: {exc.message}") from None
    return base64.b64encode(data).decode("ascii")


def _tool_result_content(content: Any) -> tuple[str, list[str]]:
    """``tool_result.content``: a string, or text and image blocks (others skipped)."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        return "", []
    text: list[str] = []
    images: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif block.get("type") == "image":
            source = block.get("source")
            if not isinstance(source, dict):
                raise BadRequest("invalid tool_result image source")
            # Ollama reads only the string fields of this untyped source
            images.append(_image({k: v for k, v in source.items() if isinstance(v, str)}))
    return "".join(text), images


def _server_tool(tool: Mapping[str, Any]) -> bool:
    return str(tool.get("type") or "").startswith("web_search")


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name","description","input_schema"}`` → a native function tool."""
    name = tool.get("name") or ""
    schema = tool.get("input_schema")
    if schema is not None and not isinstance(schema, dict):
        raise BadRequest(f"invalid input_schema for tool {jsonwire.go_quote(name)}: json: cannot "
                         f"unmarshal {opts.json_kind(schema)} into Go value of type "
                         "api.ToolFunctionParameters")
    fn: dict[str, Any] = {"name": name}
    if tool.get("description"):
        fn["description"] = tool["description"]
    fn["parameters"] = schema if schema else {"type": "object", "properties": {}}
    return {"type": "function", "function": fn}


_CHOICES: Mapping[str, str] = {"auto": "auto", "any": "required", "none": "none"}


def _tool_choice(choice: Any) -> Any:
    """Anthropic ``tool_choice`` → native (a pollama extension; Ollama ignores it)."""
    if choice is None:
        return None
    kind = choice.get("type") or ""
    if kind in _CHOICES:
        return _CHOICES[kind]
    if kind == "tool":
        if not choice.get("name"):
            raise BadRequest('tool_choice.name is required when tool_choice.type is "tool"')
        return {"type": "function", "function": {"name": choice["name"]}}
    raise BadRequest(f'invalid tool_choice type {jsonwire.go_quote(kind)} (must be "auto", '
                     '"any", "tool" or "none")')


_EFFORTS = ("high", "medium", "low", "max")


def _think(thinking: Any, output_config: Any) -> bool | str | None:
    """``thinking.type`` enabled/disabled → true/false; otherwise ``output_config.effort``
    (``xhigh`` read as ``high``) → that level. The budget is not enforced, as in Ollama."""
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled":
        return True
    if kind == "disabled":
        return False
    if isinstance(output_config, dict):
        effort = (output_config.get("effort") or "").strip().lower()
        effort = "high" if effort == "xhigh" else effort
        if effort in _EFFORTS:
            return effort
    return None


# ---------------------------------------------------------------------------------------------
# Token estimate (anthropic.EstimateCountTokens): Ollama's message_start input_tokens.


def estimate_input_tokens(body: Any) -> int:
    """Ollama's rough estimate, a quarter of the bytes of the system prompt, message texts,
    thinking, tool blocks and tool definitions (at least 1 when there are messages). Meant for
    ``message_start`` before the real count is known; the body is assumed already validated."""
    if not isinstance(body, dict):
        return 0

    def size(text: Any) -> int:
        return len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else 0

    def content_size(content: Any) -> int:
        if isinstance(content, str):
            return size(content)
        if not isinstance(content, list):
            return len(jsonwire.dumps(content)) if content is not None else 0
        total = 0
        for block in content:
            if not isinstance(block, dict):
                continue
            total += size(block.get("text")) + size(block.get("thinking"))
            if block.get("type") in ("tool_use", "tool_result"):
                total += len(jsonwire.dumps(block))
        return total

    messages = body.get("messages") or []
    total = content_size(body.get("system"))
    for msg in messages:
        if isinstance(msg, dict):
            total += size(msg.get("role")) + content_size(msg.get("content"))
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            schema = tool.get("input_schema")
            total += size(tool.get("name")) + size(tool.get("description"))
            total += len(jsonwire.dumps(schema)) if schema is not None else 0
    tokens = total // 4
    if tokens == 0 and (messages or body.get("system") is not None):
        tokens = 1
    return tokens


# ---------------------------------------------------------------------------------------------
# Responses (anthropic.ToMessagesResponse)


def stop_reason(done_reason: str, has_tool_calls: bool) -> str | None:
    """Native ``done_reason`` → ``stop_reason`` (anthropic.mapStopReason): any tool call wins;
    ``stop`` is ``end_turn``, ``length`` is ``max_tokens``, any other reason ``stop_sequence``."""
    if has_tool_calls:
        return "tool_use"
    if done_reason == "stop":
        return "end_turn"
    if done_reason == "length":
        return "max_tokens"
    return "stop_sequence" if done_reason else None


def _count(value: Any) -> int:
    return int(value) if _is_int(value) else 0


def _usage(native: Mapping[str, Any]) -> dict[str, int]:
    return {"input_tokens": _count(native.get("prompt_eval_count")),
            "output_tokens": _count(native.get("eval_count"))}


def _arguments(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):  # not what the native API sends, but tolerate a JSON string
        try:
            decoded = jsonwire.loads_request(value.encode("utf-8"))
        except BadRequest:
            return {}
        return decoded if isinstance(decoded, dict) else {}
    return {}


def _tool_use(call: Mapping[str, Any], fallback_id: str) -> dict[str, Any]:
    fn = call.get("function")
    fn = fn if isinstance(fn, dict) else {}
    return {"type": "tool_use", "id": str(call.get("id") or fallback_id),
            "name": str(fn.get("name") or ""), "input": _arguments(fn.get("arguments"))}


def _fallback_id(message_id: str, n: int) -> str:
    """A tool_use id for a native call that has none: unique per message and call."""
    return f"toolu_{message_id.removeprefix('msg_')}_{n}"


def _tool_calls(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    calls = message.get("tool_calls")
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def message_response(native_final: Mapping[str, Any], *, id: str) -> dict[str, Any]:
    """The full non-streamed native /api/chat answer → an Anthropic ``Message``."""
    message = native_final.get("message")
    message = message if isinstance(message, dict) else {}
    content: list[dict[str, Any]] = []
    if message.get("thinking"):
        content.append({"type": "thinking", "thinking": message["thinking"], "signature": ""})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    calls = _tool_calls(message)
    for n, call in enumerate(calls):
        content.append(_tool_use(call, _fallback_id(id, n)))
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": native_final.get("model") or "",
        "content": content,
        "stop_reason": stop_reason(str(native_final.get("done_reason") or ""), bool(calls)),
        "stop_sequence": None,
        "usage": _usage(native_final),
    }


# ---------------------------------------------------------------------------------------------
# Streaming (anthropic.StreamConverter)
#
# Theory of operation: Anthropic streams a message as numbered content blocks, each opened by
# content_block_start, grown by content_block_delta and closed by content_block_stop; at most
# one is open at a time. Native lines carry thinking, then content, then whole tool calls. A
# thinking or text piece extends the open block when it is of the same kind; otherwise the open
# block is closed and a new one started. A tool call is a complete block (start, one
# input_json_delta with the arguments, stop) and closes whatever was open. The done line
# closes the open block, then message_delta (stop_reason, usage) and message_stop end the
# message. Lines after that are ignored.


class MessageStream:
    """Native /api/chat stream lines → Anthropic SSE events ``(event type, data)``.

    ``start()`` gives ``message_start`` (``events()`` gives it first if ``start()`` was not
    called). ``input_tokens`` is what message_start reports, since the real count arrives
    with the last line: pass ``estimate_input_tokens(body)`` to send what Ollama sends, or an
    exact count if the route has one; 0 by default.
    """

    __slots__ = ("_calls", "_done", "_index", "_input_tokens", "_open", "_seen_ids",
                 "_started", "id", "model")

    def __init__(self, id: str, model: str, *, input_tokens: int = 0) -> None:
        self.id = id
        self.model = model
        self._input_tokens = input_tokens
        self._started = False
        self._done = False
        self._open: str | None = None  # "thinking" | "text" while a block is open
        self._index = 0  # index of the open block, or of the next one
        self._calls = 0
        self._seen_ids: set[str] = set()

    @property
    def done(self) -> bool:
        """True after message_stop or an error event: nothing more will be produced."""
        return self._done

    def start(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    @staticmethod
    def ping() -> Event:
        """A keep-alive the route may send at any time between events."""
        return ("ping", {"type": "ping"})

    def events(self, native_line: Mapping[str, Any]) -> list[Event]:
        if self._done:
            return []
        error = native_line.get("error")
        if error is not None:
            self._done = True
            return [("error", {"type": "error",
                               "error": {"type": "api_error", "message": str(error)}})]
        if not self._started and _count(native_line.get("prompt_eval_count")):
            self._input_tokens = _count(native_line["prompt_eval_count"])
        out = self.start()
        message = native_line.get("message")
        message = message if isinstance(message, dict) else {}
        thinking = message.get("thinking")
        if isinstance(thinking, str) and thinking:
            out += self._piece("thinking", thinking)
        text = message.get("content")
        if isinstance(text, str) and text:
            out += self._piece("text", text)
        for call in _tool_calls(message):
            out += self._tool_call(call)
        if native_line.get("done"):
            out += self._close()
            self._done = True
            usage = _usage(native_line)
            reason = stop_reason(str(native_line.get("done_reason") or ""), self._calls > 0)
            out.append(("message_delta", {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": usage,
            }))
            out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        self._open = None
        self._index += 1
        return [("content_block_stop", {"type": "content_block_stop", "index": self._index - 1})]

    def _piece(self, kind: str, text: str) -> list[Event]:
        out: list[Event] = []
        if self._open != kind:
            out += self._close()
            self._open = kind
            block = ({"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking"
                     else {"type": "text", "text": ""})
            out.append(("content_block_start", {"type": "content_block_start",
                                                "index": self._index, "content_block": block}))
        delta = ({"type": "thinking_delta", "thinking": text} if kind == "thinking"
                 else {"type": "text_delta", "text": text})
        out.append(("content_block_delta", {"type": "content_block_delta",
                                            "index": self._index, "delta": delta}))
        return out

    def _tool_call(self, call: Mapping[str, Any]) -> list[Event]:
        call_id = call.get("id")
        if isinstance(call_id, str) and call_id:
            if call_id in self._seen_ids:  # Ollama sends each call once, keyed by its id
                return []
            self._seen_ids.add(call_id)
        block = _tool_use(call, _fallback_id(self.id, self._calls))
        self._calls += 1
        out = self._close()
        index = self._index
        self._index += 1
        partial = jsonwire.dumps(block.pop("input")).decode("utf-8")
        return out + [
            ("content_block_start", {"type": "content_block_start", "index": index,
                                     "content_block": {**block, "input": {}}}),
            ("content_block_delta", {"type": "content_block_delta", "index": index,
                                     "delta": {"type": "input_json_delta",
                                               "partial_json": partial}}),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]

