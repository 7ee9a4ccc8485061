"""OpenAI's Responses API (``POST /v1/responses``) as a translation to and from the native chat
(Ollama's ``openai/responses.go``). Stateless: the whole conversation is the
request's ``input``. Pure: ids and times are arguments.

*Request.* ``responses_request`` turns ``instructions`` (a system message) and ``input`` (a
string, or items: ``message`` with ``input_text``/``output_text``/``input_image`` parts,
``function_call``, ``function_call_output``, ``reasoning``) into native messages; flat Responses
tools (``{"type": "function", "name", "description", "parameters"}``, and ``namespace`` groups
of them) into native nested tools; ``max_output_tokens``, ``temperature``, ``top_p``,
``reasoning.effort``, ``text.format`` and ``stream`` into their native counterparts.

*Response.* ``responses_object`` shapes a native final chat object as a ``response``;
``ResponsesStream`` turns native stream lines into the ``(event type, data)`` pairs of the
Responses stream, each with ``sequence_number``; the route writes ``sse.encode(json, event=type)``.

Theory of the stream. Output items open and close in order and never overlap, one output index
each: a reasoning item (``output_item.added``, ``reasoning_summary_part.added``,
``reasoning_summary_text.delta``…, then ``….text.done``, ``….part.done``,
``output_item.done``) while thinking arrives; a message item (``output_item.added``,
``content_part.added``, ``output_text.delta``…, then ``output_text.done``,
``content_part.done``, ``output_item.done``) while content arrives; function calls as complete
items (``output_item.added``, ``function_call_arguments.delta``, ``….done``,
``output_item.done``). Whatever is open closes when a different kind of output begins and at
the end, which is ``response.completed`` carrying every item.

Where pollama differs from Ollama on purpose ("pollama:" below): an open text item is closed
before thinking or tool calls take the next output index (Ollama reuses the index and never
closes the text item); text that came with tool calls is kept as a message item in the
non-streamed response too; reasoning summaries also get their ``summary_part`` events; a
``length`` stop is ``status: "incomplete"`` (``response.incomplete``) as OpenAI reports it;
``tool_choice`` is honoured and echoed; a ``function_call_output`` also gets the called
function's name as ``tool_name``; ``text.format`` ``json_object`` means JSON; a reasoning input
item without ``encrypted_content`` contributes its summary text; a native error becomes
``response.failed``; ``previous_response_id`` is refused instead of silently ignored; the
built-in ``web_search`` tool is not offered (Ollama runs searches through ollama.com).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import jsonwire
from . import options as opts
from .errors import BadRequest
from .openai_api import (
    JSON,
    Fields,
    _anything,
    _fields,
    _is_num,
    _list_of,
    _struct,
    arguments_json,
    decode_image_url,
    native_message,
    native_tool_call,
    parse_arguments,
    think_from_effort,
)
from .requests import _is_bool, _is_int, _is_obj, _is_str

__all__ = ["Event", "ResponsesStream", "response_usage", "responses_object", "responses_request"]

Event = tuple[str, JSON]

_REQUEST_FIELDS: Fields = {
    "model": ("string", _is_str),
    "background": ("bool", _is_bool),
    "conversation": ("json.RawMessage", _anything),
    "include": ("[]string", _list_of(_is_str)),
    "input": ("openai.ResponsesInput", _anything),
    "instructions": ("string", _is_str),
    "max_output_tokens": ("int", _is_int),
    "reasoning": ("openai.ResponsesReasoning", _is_obj),
    "temperature": ("float64", _is_num),
    "text": ("openai.ResponsesText", _is_obj),
    "top_p": ("float64", _is_num),
    "truncation": ("string", _is_str),
    "tools": ("[]openai.ResponsesTool", _list_of(_is_obj)),
    "stream": ("bool", _is_bool),
}

_REASONING_FIELDS: Fields = {
    "effort": ("string", _is_str),
    "generate_summary": ("string", _is_str),
    "summary": ("string", _is_str),
}

_TOOL_FIELDS: Fields = {
    "type": ("string", _is_str),
    "name": ("string", _is_str),
    "description": ("string", _is_str),
    "strict": ("bool", _is_bool),
    "parameters": ("map[string]interface {}", _is_obj),
    "tools": ("[]openai.ResponsesTool", _list_of(_is_obj)),
}

_FORMAT_FIELDS: Fields = {
    "type": ("string", _is_str),
    "name": ("string", _is_str),
    "schema": ("json.RawMessage", _anything),
    "strict": ("bool", _is_bool),
}

_CONTENT_FIELDS: Mapping[str, tuple[str, Fields]] = {
    "input_text": ("ResponsesTextContent", {"type": ("string", _is_str),
                                            "text": ("string", _is_str)}),
    "output_text": ("ResponsesOutputTextContent", {"type": ("string", _is_str),
                                                   "text": ("string", _is_str)}),
    "input_image": ("ResponsesImageContent", {"type": ("string", _is_str),
                                              "detail": ("string", _is_str),
                                              "file_id": ("string", _is_str),
                                              "image_url": ("string", _is_str)}),
    "input_file": ("ResponsesFileContent", {"type": ("string", _is_str)}),
}

_ITEM_FIELDS: Mapping[str, tuple[str, Fields]] = {
    "message": ("", {"type": ("string", _is_str), "role": ("string", _is_str)}),
    "function_call": ("ResponsesFunctionCall", {
        "id": ("string", _is_str), "type": ("string", _is_str), "call_id": ("string", _is_str),
        "name": ("string", _is_str), "arguments": ("string", _is_str)}),
    "function_call_output": ("", {"type": ("string", _is_str), "call_id": ("string", _is_str)}),
    "reasoning": ("ResponsesReasoningInput", {
        "id": ("string", _is_str), "type": ("string", _is_str),
        "summary": ("[]openai.ResponsesReasoningSummary", _list_of(_is_obj)),
        "encrypted_content": ("string", _is_str)}),
    "web_search_call": ("ResponsesWebSearchCall", {"id": ("string", _is_str),
                                                   "type": ("string", _is_str)}),
}

_TYPE_ROLE = 'struct { Type string "json:\\"type\\""; Role string "json:\\"role\\"" }'
_TYPE_ONLY = 'struct { Type string "json:\\"type\\"" }'


def _raw_list_error(what: str, value: Any) -> BadRequest:
    return BadRequest(f"{what} must be a string or array: json: cannot unmarshal "
                      f"{opts.json_kind(value)} into Go value of type []json.RawMessage")


# ---------------------------------------------------------------------------------------------
# Input items, decoded and checked as Ollama's custom unmarshalers do


def _content(raw: Any, where: str) -> tuple[str, list[str]]:
    """Content parts → (text, images). ``where`` prefixes errors (``input[0]: content[1]``)."""
    text = ""
    images: list[str] = []
    for j, part in enumerate(raw):
        at = f"{where}[{j}]: "
        if not isinstance(part, dict):
            raise BadRequest(f"{at}json: cannot unmarshal {opts.json_kind(part)} into Go value "
                             f"of type {_TYPE_ONLY}")
        kind = part.get("type")
        if kind is not None and not isinstance(kind, str):
            raise BadRequest(f"{at}json: cannot unmarshal {opts.json_kind(kind)} into Go struct "
                             f"field .type of type string")
        if kind is None or kind not in _CONTENT_FIELDS:
            raise BadRequest(f"{at}unknown content type: {kind or ''}")
        struct, fields = _CONTENT_FIELDS[kind]
        try:
            _fields(part, struct, fields)
        except BadRequest as exc:
            raise BadRequest(at + exc.message) from None
        if kind in ("input_text", "output_text"):
            text += part.get("text") or ""
        elif kind == "input_image":
            if part.get("image_url"):  # a file_id alone is not supported: skipped
                images.append(decode_image_url(part["image_url"]))
        else:
            # TODO(upstream too): inline small text files
            raise BadRequest("file inputs are not currently supported")
    return text, images


def _message_content(value: Any, at: str) -> tuple[str, list[str]]:
    if value is None:
        return "", []
    if isinstance(value, str):
        return value, []
    if not isinstance(value, list):
        raise BadRequest(at + _raw_list_error("content", value).message)
    return _content(value, at + "content")


def _output_content(value: Any, at: str) -> tuple[str, list[str]]:
    if value is None:
        return "", []
    if isinstance(value, str):
        return value, []
    if not isinstance(value, list):
        raise BadRequest(at + _raw_list_error("output", value).message)
    return _content(value, at + "output")


def _item_type(item: Any, at: str) -> str:
    if not isinstance(item, dict):
        raise BadRequest(f"{at}json: cannot unmarshal {opts.json_kind(item)} into Go value of "
                         f"type {_TYPE_ROLE}")
    kind, role = item.get("type"), item.get("role")
    for key, v in (("type", kind), ("role", role)):
        if v is not None and not isinstance(v, str):
            raise BadRequest(f"{at}json: cannot unmarshal {opts.json_kind(v)} into Go struct "
                             f"field .{key} of type string")
    kind = kind or ("message" if role else "")  # {"role", "content"} shorthand
    if not kind:
        raise BadRequest(f"{at}input item missing required 'type' field")
    if kind not in _ITEM_FIELDS:
        raise BadRequest(f"{at}unknown input item type: {jsonwire.go_quote(kind)}")
    struct, fields = _ITEM_FIELDS[kind]
    try:
        _fields(item, struct, fields)
    except BadRequest as exc:
        raise BadRequest(at + exc.message) from None
    return kind


def _messages(obj: Mapping[str, Any]) -> list[JSON]:
    messages: list[JSON] = []
    if obj.get("instructions"):
        messages.append(native_message("system", obj["instructions"]))
    value = obj.get("input")
    if isinstance(value, str):
        if value:
            messages.append(native_message("user", value))
        return messages
    if value is None:
        return messages
    if not isinstance(value, list):
        raise _raw_list_error("input", value)
    kinds = [_item_type(item, f"input[{i}]: ") for i, item in enumerate(value)]
    # decode every item first (Go's unmarshal), then convert
    decoded: list[tuple[str, JSON, tuple[str, list[str]]]] = []
    for i, (kind, item) in enumerate(zip(kinds, value)):
        at = f"input[{i}]: "
        parts: tuple[str, list[str]] = ("", [])
        if kind == "message":
            parts = _message_content(item.get("content"), at)
        elif kind == "function_call_output":
            parts = _output_content(item.get("output"), at)
        decoded.append((kind, item, parts))

    names: dict[str, str] = {}  # call_id → function name, for tool_name
    pending_thinking = ""
    for i, (kind, item, (text, images)) in enumerate(decoded):
        if kind == "reasoning":
            pending_thinking = item.get("encrypted_content") or "".join(
                s.get("text") or "" for s in item.get("summary") or () if isinstance(s, dict))
        elif kind == "message":
            role: str = item.get("role") or ""
            thinking = ""
            if role == "assistant" and pending_thinking:
                thinking, pending_thinking = pending_thinking, ""
            # An assistant message replayed between a function_call and its output joins the
            # message holding that call, so the tool result follows the call it answers.
            nxt = decoded[i + 1] if i + 1 < len(decoded) else None
            output_call = nxt[1].get("call_id") if nxt and nxt[0] == "function_call_output" \
                else None
            last = messages[-1] if messages else None
            if (role == "assistant" and output_call and last is not None
                    and last["role"] == "assistant"
                    and any(c.get("id") == output_call for c in last.get("tool_calls", ()))):
                if last["content"] and text:
                    last["content"] += "\n"
                last["content"] += text
                if images:
                    last.setdefault("images", []).extend(images)
                if thinking:
                    last["thinking"] = thinking
                continue
            messages.append(native_message(role, text, images=images, thinking=thinking))
        elif kind == "function_call":
            call_id: str = item.get("call_id") or ""
            name: str = item.get("name") or ""
            args: dict[str, Any] = {}
            if item.get("arguments"):
                try:
                    args = parse_arguments(item["arguments"])
                except BadRequest as exc:
                    raise BadRequest(
                        f"failed to parse function call arguments: {exc.message}") from None
            names[call_id] = name
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                calls = last.setdefault("tool_calls", [])
                calls.append(native_tool_call(call_id, len(calls), name, args))
                if pending_thinking:
                    last["thinking"], pending_thinking = pending_thinking, ""
            else:
                messages.append(native_message(
                    "assistant", thinking=pending_thinking,
                    tool_calls=[native_tool_call(call_id, 0, name, args)]))
                pending_thinking = ""
        elif kind == "function_call_output":
            call_id = item.get("call_id") or ""
            messages.append(native_message("tool", text, images=images,
                                           tool_name=names.get(call_id, ""),
                                           tool_call_id=call_id))
        # web_search_call items are history metadata: the message after them has the result
    if pending_thinking:
        messages.append(native_message("assistant", thinking=pending_thinking))
    return _wire_order(messages)


def _wire_order(messages: list[JSON]) -> list[JSON]:
    """Rebuild merged messages in api.Message field order."""
    return [native_message(m["role"], m["content"], images=m.get("images", ()),
                           thinking=m.get("thinking", ""), tool_calls=m.get("tool_calls", ()),
                           tool_name=m.get("tool_name", ""),
                           tool_call_id=m.get("tool_call_id", "")) for m in messages]


# ---------------------------------------------------------------------------------------------
# Tools


def _is_web_search(tool: Mapping[str, Any]) -> bool:
    return str(tool.get("type") or "").startswith("web_search")


def _convert_tool(tool: Mapping[str, Any], where: str) -> list[JSON]:
    _fields(tool, where, _TOOL_FIELDS)
    if _is_web_search(tool):
        return []  # pollama: no server-side search to run
    if tool.get("type") == "namespace":
        # a namespace groups functions; api.Tool names are flat, so members get "ns." names
        prefix = f"{tool['name']}." if tool.get("name") else ""
        out: list[JSON] = []
        for member in tool.get("tools") or ():
            for t in _convert_tool(member or {}, where + ".tools"):
                member_fn = t["function"]
                if prefix and not member_fn["name"].startswith(prefix):
                    member_fn["name"] = prefix + member_fn["name"]
                out.append(t)
        return out
    fn: JSON = {"name": tool.get("name") or ""}
    if tool.get("description"):
        fn["description"] = tool["description"]
    params = tool.get("parameters")
    fn["parameters"] = params if params is not None else {"type": "object", "properties": {}}
    return [{"type": tool.get("type") or "", "function": fn}]


def _tool_choice(value: Any) -> Any:
    """Responses ``tool_choice`` → native: the function form is flat here
    (``{"type": "function", "name": ...}``)."""
    if isinstance(value, dict) and value.get("type") == "function" and "function" not in value:
        return {"type": "function", "function": {"name": value.get("name")}}
    return value


# ---------------------------------------------------------------------------------------------
# Request


def responses_request(body: Any) -> JSON:
    """A Responses API body → the native ``/api/chat`` body."""
    obj = _struct(body, "ResponsesRequest", _REQUEST_FIELDS)
    if isinstance(obj.get("reasoning"), dict):
        _fields(obj["reasoning"], "ResponsesRequest.reasoning", _REASONING_FIELDS)
    text = obj.get("text")
    fmt_obj = text.get("format") if isinstance(text, dict) else None
    if fmt_obj is not None:
        if not isinstance(fmt_obj, dict):
            raise BadRequest(f"json: cannot unmarshal {opts.json_kind(fmt_obj)} into Go struct "
                             "field ResponsesRequest.text.format of type "
                             "openai.ResponsesTextFormat")
        _fields(fmt_obj, "ResponsesRequest.text.format", _FORMAT_FIELDS)
    if obj.get("previous_response_id"):
        raise BadRequest("previous_response_id is not supported: responses are not stored, "
                         "send the whole conversation as input")
    messages = _messages(obj)

    options: JSON = {"temperature": 1.0 if obj.get("temperature") is None
                     else float(obj["temperature"])}
    if obj.get("top_p") is not None:  # Ollama leaves top_p to the model here
        options["top_p"] = float(obj["top_p"])
    if obj.get("max_output_tokens") is not None:
        options["num_predict"] = int(obj["max_output_tokens"])
    reasoning = obj.get("reasoning") or {}
    think = think_from_effort(reasoning.get("effort") or "")

    tools: list[JSON] = []
    raw_tools = obj.get("tools") or []
    web_search = any(_is_web_search(t or {}) for t in raw_tools)
    for t in raw_tools:
        for tool in _convert_tool(t or {}, "ResponsesRequest.tools"):
            # the built-in tool owns this name (Ollama drops a user function shadowing it)
            if not (web_search and tool["function"]["name"] == "web_search"):
                tools.append(tool)

    native: JSON = {"model": obj.get("model") or "", "messages": messages,
                    "stream": obj.get("stream") is True}
    fmt = _format(fmt_obj)
    if fmt is not None:
        native["format"] = fmt
    if tools:
        native["tools"] = tools
    if obj.get("tool_choice") is not None:
        native["tool_choice"] = _tool_choice(obj["tool_choice"])  # pollama: honoured
    native["options"] = options
    if think is not None:
        native["think"] = think
    return native


def _format(fmt: Any) -> Any:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        return fmt.get("schema")
    if fmt.get("type") == "json_object":
        return "json"  # pollama: as chat completions' response_format
    return None


# ---------------------------------------------------------------------------------------------
# The response object


def _text_format(request: Mapping[str, Any]) -> JSON:
    text = request.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return {"type": "text"}
    out: JSON = {"type": fmt.get("type") or ""}
    for key in ("name", "schema", "strict"):
        if fmt.get(key) is not None and fmt.get(key) != "":
            out[key] = fmt[key]
    return out


def _echo_tools(request: Mapping[str, Any]) -> list[JSON]:
    out: list[JSON] = []
    for t in request.get("tools") or ():
        if isinstance(t, dict):
            out.append({"type": t.get("type") or "", "name": t.get("name") or "",
                        "description": t.get("description"), "strict": t.get("strict"),
                        "parameters": t.get("parameters")})
    return out


def _reasoning_echo(request: Mapping[str, Any]) -> JSON | None:
    reasoning = request.get("reasoning")
    if not isinstance(reasoning, dict):
        return None
    effort, summary = reasoning.get("effort") or None, reasoning.get("summary") or None
    if effort is None and summary is None:
        return None
    return {"effort": effort, "summary": summary}


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else default


def response_usage(native: Mapping[str, Any]) -> JSON:
    prompt = int(native.get("prompt_eval_count") or 0)
    output = int(native.get("eval_count") or 0)
    return {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output,
            # cache_write_tokens: OpenAI's newer schema requires it (Ollama omits it)
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0}}


def _response(*, id: str, created: int, model: str, request: Any, status: str,
              output: list[JSON], usage: JSON | None, completed_at: int | None = None,
              incomplete: bool = False, error: JSON | None = None) -> JSON:
    """The ``response`` object in Ollama's field order, echoing the request's settings."""
    req: Mapping[str, Any] = request if isinstance(request, dict) else {}
    max_output = req.get("max_output_tokens")
    tool_choice = req.get("tool_choice")
    return {
        "id": id, "object": "response", "created_at": created, "completed_at": completed_at,
        "status": status,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "model": model, "previous_response_id": None,
        "instructions": req.get("instructions") or None, "output": output, "error": error,
        "tools": _echo_tools(req),
        "tool_choice": tool_choice if isinstance(tool_choice, (str, dict)) else "auto",
        "truncation": req.get("truncation") if isinstance(req.get("truncation"), str)
        else "disabled",
        "parallel_tool_calls": True, "text": {"format": _text_format(req)},
        "top_p": _number(req.get("top_p"), 1.0), "presence_penalty": 0,
        "frequency_penalty": 0, "top_logprobs": 0,
        "temperature": _number(req.get("temperature"), 1.0),
        "reasoning": _reasoning_echo(req), "usage": usage,
        "max_output_tokens": max_output if isinstance(max_output, int) else None,
        "max_tool_calls": None, "store": False, "background": req.get("background") is True,
        "service_tier": "default", "metadata": {}, "safety_identifier": None,
        "prompt_cache_key": None,
    }


def _suffix(id: str) -> str:
    return id.removeprefix("resp_")


def _reasoning_item(item_id: str, thinking: str) -> JSON:
    return {"id": item_id, "type": "reasoning",
            "summary": [{"type": "summary_text", "text": thinking}],
            "encrypted_content": thinking}  # plain text, as Ollama sends it back to itself


def _text_part(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str, status: str = "completed") -> JSON:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [_text_part(text)]}


def _function_call_item(item_id: str, call: Mapping[str, Any], status: str = "completed",
                        arguments: str | None = None) -> JSON:
    fn = call.get("function") or {}
    return {"id": item_id, "type": "function_call", "status": status,
            "call_id": call.get("id") or "", "name": fn.get("name") or "",
            "arguments": arguments_json(fn.get("arguments")) if arguments is None
            else arguments}


def responses_object(native_final: Mapping[str, Any], *, id: str, created: int,
                     request: Any = None, model: str | None = None, item_id: str | None = None,
                     completed_at: int | None = None) -> JSON:
    """A native non-streamed chat response → a Responses ``response`` object. ``request`` is
    the Responses body (its settings are echoed); ``completed_at`` defaults to ``created``."""
    msg = native_final.get("message") or {}
    thinking: str = msg.get("thinking") or ""
    content: str = msg.get("content") or ""
    calls = msg.get("tool_calls") or []
    incomplete = native_final.get("done_reason") == "length"
    output: list[JSON] = []
    if thinking:
        output.append(_reasoning_item(f"rs_{id}", thinking))
    if content or not calls:  # pollama: text next to tool calls is kept
        output.append(_message_item(item_id or f"msg_{_suffix(id)}", content,
                                    "incomplete" if incomplete else "completed"))
    for i, call in enumerate(calls):
        output.append(_function_call_item(f"fc_{id}_{i}", call))
    return _response(id=id, created=created, model=model or native_final.get("model") or "",
                     request=request, status="incomplete" if incomplete else "completed",
                     output=output, usage=response_usage(native_final),
                     completed_at=created if completed_at is None else completed_at,
                     incomplete=incomplete)


# ---------------------------------------------------------------------------------------------
# The stream


class ResponsesStream:
    """Native chat stream lines → Responses stream events (see the module's theory).

    ``events(native, now=...)`` returns ``(type, data)`` pairs; ``now`` (unix seconds) stamps
    ``completed_at`` on the final response (default: ``created``). ``error(message)`` ends the
    stream with ``response.failed``. After ``finished`` nothing more is emitted.
    """

    def __init__(self, id: str, created: int, model: str, request: Any = None,
                 item_id: str | None = None) -> None:
        self.id = id
        self.created = created
        self.model = model
        self.request = request
        self.finished = False
        self.failed = False
        self._msg_base = item_id or f"msg_{_suffix(id)}"
        self._seq = 0
        self._opened = False
        self._index = 0  # the output index the next item takes
        self._items: list[JSON] = []  # completed items, in output order
        self._reasoning: tuple[str, list[str]] | None = None  # open item: id, text pieces
        self._message: tuple[str, list[str]] | None = None
        self._tool_calls_sent = False

    def _event(self, kind: str, data: JSON) -> Event:
        data = {"type": kind, **data, "sequence_number": self._seq}
        self._seq += 1
        return kind, data

    def _response(self, status: str, output: list[JSON], usage: JSON | None = None, **kw: Any
                  ) -> JSON:
        return _response(id=self.id, created=self.created, model=self.model,
                         request=self.request, status=status, output=output, usage=usage, **kw)

    def _open(self) -> list[Event]:
        if self._opened:
            return []
        self._opened = True
        return [self._event("response.created",
                            {"response": self._response("in_progress", [])}),
                self._event("response.in_progress",
                            {"response": self._response("in_progress", [])})]

    # -- reasoning ---------------------------------------------------------------------------
    def _thinking(self, text: str) -> list[Event]:
        out = self._close_message()
        if self._reasoning is None:
            item_id = f"rs_{_suffix(self.id)}_{self._index}"
            self._reasoning = (item_id, [])
            out.append(self._event("response.output_item.added", {
                "output_index": self._index,
                "item": {"id": item_id, "type": "reasoning", "summary": []}}))
            out.append(self._event("response.reasoning_summary_part.added", {
                "item_id": item_id, "output_index": self._index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}}))
        item_id, pieces = self._reasoning
        pieces.append(text)
        out.append(self._event("response.reasoning_summary_text.delta", {
            "item_id": item_id, "output_index": self._index, "summary_index": 0,
            "delta": text}))
        return out

    def _close_reasoning(self) -> list[Event]:
        if self._reasoning is None:
            return []
        item_id, pieces = self._reasoning
        text = "".join(pieces)
        item = _reasoning_item(item_id, text)
        index = self._index
        self._reasoning = None
        self._items.append(item)
        self._index += 1
        return [
            self._event("response.reasoning_summary_text.done", {
                "item_id": item_id, "output_index": index, "summary_index": 0, "text": text}),
            self._event("response.reasoning_summary_part.done", {
                "item_id": item_id, "output_index": index, "summary_index": 0,
                "part": {"type": "summary_text", "text": text}}),
            self._event("response.output_item.done", {"output_index": index, "item": item}),
        ]

    # -- text --------------------------------------------------------------------------------
    def _text(self, text: str) -> list[Event]:
        out = self._close_reasoning()
        if self._message is None:
            item_id = self._msg_base if not any(
                i["type"] == "message" for i in self._items) else f"{self._msg_base}_{self._index}"
            self._message = (item_id, [])
            out.append(self._event("response.output_item.added", {
                "output_index": self._index,
                "item": {"id": item_id, "type": "message", "status": "in_progress",
                         "role": "assistant", "content": []}}))
            out.append(self._event("response.content_part.added", {
                "item_id": item_id, "output_index": self._index, "content_index": 0,
                "part": _text_part("")}))
        item_id, pieces = self._message
        pieces.append(text)
        out.append(self._event("response.output_text.delta", {
            "item_id": item_id, "output_index": self._index, "content_index": 0,
            "delta": text, "logprobs": []}))
        return out

    def _close_message(self, status: str = "completed") -> list[Event]:
        if self._message is None:
            return []
        item_id, pieces = self._message
        text = "".join(pieces)
        item = _message_item(item_id, text, status)
        index = self._index
        self._message = None
        self._items.append(item)
        self._index += 1
        return [
            self._event("response.output_text.done", {
                "item_id": item_id, "output_index": index, "content_index": 0, "text": text,
                "logprobs": []}),
            self._event("response.content_part.done", {
                "item_id": item_id, "output_index": index, "content_index": 0,
                "part": _text_part(text)}),
            self._event("response.output_item.done", {"output_index": index, "item": item}),
        ]

    # -- tool calls --------------------------------------------------------------------------
    def _calls(self, calls: list[Mapping[str, Any]]) -> list[Event]:
        out = self._close_reasoning() + self._close_message()
        for call in calls:
            index = self._index
            item_id = f"fc_{_suffix(self.id)}_{index}"
            item = _function_call_item(item_id, call)
            out += [
                self._event("response.output_item.added", {
                    "output_index": index,
                    "item": _function_call_item(item_id, call, "in_progress", "")}),
                self._event("response.function_call_arguments.delta", {
                    "item_id": item_id, "output_index": index, "delta": item["arguments"]}),
                self._event("response.function_call_arguments.done", {
                    "item_id": item_id, "output_index": index,
                    "arguments": item["arguments"]}),
                self._event("response.output_item.done", {"output_index": index,
                                                          "item": item}),
            ]
            self._items.append(item)
            self._index += 1
        self._tool_calls_sent = True
        return out

    # -- lines -------------------------------------------------------------------------------
    def events(self, native: Mapping[str, Any], *, now: int | None = None) -> list[Event]:
        if self.finished:
            return []
        if native.get("error") is not None and not native.get("done"):
            return self.error(str(native["error"]))
        out = self._open()
        msg = native.get("message") or {}
        if msg.get("thinking"):
            out += self._thinking(msg["thinking"])
        calls = msg.get("tool_calls") or []
        if calls:
            out += self._calls(calls)
        # as Ollama: text that comes with or after tool calls is not shown
        elif msg.get("content") and not self._tool_calls_sent:
            out += self._text(msg["content"])
        if native.get("done"):
            incomplete = native.get("done_reason") == "length"
            out += self._close_reasoning()
            out += self._close_message("incomplete" if incomplete else "completed")
            status = "incomplete" if incomplete else "completed"
            response = self._response(status, list(self._items), response_usage(native),
                                      completed_at=self.created if now is None else now,
                                      incomplete=incomplete)
            out.append(self._event(f"response.{status}", {"response": response}))
            self.finished = True
        return out

    def error(self, message: str) -> list[Event]:
        """End the stream with ``response.failed`` (the items finished so far are kept)."""
        if self.finished:
            return []
        out = self._open()
        self.finished = self.failed = True
        response = self._response("failed", list(self._items),
                                  error={"code": "server_error", "message": message})
        out.append(self._event("response.failed", {"response": response}))
        return out
