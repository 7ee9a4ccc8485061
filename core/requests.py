"""Parsing and validating the native API's request bodies (Ollama's server/routes.go
GenerateHandler and ChatHandler; server/create.go CreateHandler; api/types.go).

Bodies are decoded by ``jsonwire.loads_request`` and checked field by field against the Go
struct Ollama decodes them into, so a wrong type gets Go's message:
``json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message``.
Unknown fields are ignored, as Go does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import jsonwire
from . import options as opts
from . import schema_limits
from .errors import BadRequest

__all__ = [
    "FOREVER", "THINK_LEVELS", "ChatRequest", "Check", "CreateRequest", "GenerateRequest",
    "Message", "PullRequest", "ShowRequest", "check_format", "keep_alive_from_seconds",
    "parse_chat", "parse_copy", "parse_create", "parse_delete", "parse_generate",
    "parse_go_duration", "parse_keep_alive", "parse_pull", "parse_show"
]

# ---------------------------------------------------------------------------------------------
# Go type checks


_kind = opts.json_kind


def _unmarshal_error(value: Any, where: str, gotype: str, check: Any = None) -> BadRequest:
    if isinstance(check, _ListOf) and isinstance(value, list) and gotype.startswith("[]"):
        # Go decodes an array element by element and names the element that failed
        value, gotype = check.bad_element(value), gotype[2:]
    return BadRequest(
        f"json: cannot unmarshal {_kind(value)} into Go struct field {where} of type {gotype}"
    )


Check = Callable[[Any], bool]


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or (
        isinstance(v, float) and v.is_integer())


def _is_obj(v: Any) -> bool:
    return isinstance(v, dict)


class _ListOf:
    """A JSON array whose elements pass ``element``. ``null`` elements are accepted where Go
    accepts them (it leaves the element zero: 0, "", empty bytes)."""

    __slots__ = ("allow_null", "element")

    def __init__(self, element: Check, *, allow_null: bool = True) -> None:
        self.element = element
        self.allow_null = allow_null

    def bad_element(self, v: list[Any]) -> Any:
        """The first element Go would refuse, or ``_OK``."""
        for x in v:
            if x is None and self.allow_null:
                continue
            if x is None or not self.element(x):
                return x
        return _OK

    def __call__(self, v: Any) -> bool:
        return isinstance(v, list) and self.bad_element(v) is _OK


_OK = object()


def _is_list_of(check: Check, *, allow_null: bool = True) -> _ListOf:
    return _ListOf(check, allow_null=allow_null)


def _anything(v: Any) -> bool:
    return True


_FIELD_TYPES: Mapping[str, tuple[str, Check]] = {
    "model": ("string", _is_str),
    "name": ("string", _is_str),
    "prompt": ("string", _is_str),
    "suffix": ("string", _is_str),
    "system": ("string", _is_str),
    "template": ("string", _is_str),
    "context": ("[]int", _is_list_of(_is_int)),  # each element also in int64: _context
    "stream": ("bool", _is_bool),
    "raw": ("bool", _is_bool),
    "images": ("[]api.ImageData", _is_list_of(_is_str)),
    "options": ("map[string]interface {}", _is_obj),
    "messages": ("[]api.Message", lambda v: isinstance(v, list)),
    "tools": ("api.Tools", lambda v: isinstance(v, list)),
    "truncate": ("bool", _is_bool),
    "shift": ("bool", _is_bool),
    "logprobs": ("bool", _is_bool),
    "top_logprobs": ("int", _is_int),
    "format": ("json.RawMessage", _anything),
    "keep_alive": ("api.Duration", _anything),
    "think": ("api.ThinkValue", _anything),
    "insecure": ("bool", _is_bool),
    "files": ("map[string]string", lambda v: isinstance(v, dict) and all(
        isinstance(x, str) for x in v.values())),
    "adapters": ("map[string]string", lambda v: isinstance(v, dict) and all(
        isinstance(x, str) for x in v.values())),
    "parameters": ("map[string]interface {}", _is_obj),
    "license": ("interface {}", lambda v: isinstance(v, str) or _is_list_of(_is_str)(v)),
    "quantize": ("string", _is_str),
    "from": ("string", _is_str),
    "verbose": ("bool", _is_bool),
    "source": ("string", _is_str),
    "destination": ("string", _is_str),
}


def _object(body: Any, struct: str) -> dict[str, Any]:
    """The decoded body as a dict; ``null`` acts as ``{}`` (Go leaves the struct zero)."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest(
            f"json: cannot unmarshal {_kind(body)} into Go value of type api.{struct}")
    for key, value in body.items():
        spec = _FIELD_TYPES.get(key)
        if spec is None or value is None:
            continue
        gotype, check = spec
        if not check(value):
            raise _unmarshal_error(value, f"{struct}.{key}", gotype, check)
    return body


# ---------------------------------------------------------------------------------------------
# keep_alive (Ollama's server/sched.go): number = seconds, negative = forever; string = Go
# duration.

_UNITS_NS = {
    "ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
}
FOREVER = -1
_MAX_DURATION = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds


def _duration_error(orig: str) -> BadRequest:
    return BadRequest(f"time: invalid duration {_time_quote(orig)}")


def _time_quote(text: str) -> str:
    """Go's time.quote: the text in double quotes, ``"`` and ``\\`` escaped, control and
    non-ASCII bytes as ``\\xNN``."""
    out = ['"']
    for ch in text:
        if ch < " " or ord(ch) >= 0x80:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            out.append("\\" + ch if ch in '"\\' else ch)
    out.append('"')
    return "".join(out)


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration → nanoseconds, with its integer arithmetic and its overflow
    checks: a duration past ±2^63 ns (about 292 years) is ``time: invalid duration``, as is
    anything malformed. Raises BadRequest with Go's message."""
    orig = text
    neg = False
    if text and text[0] in "+-":
        neg = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise _duration_error(orig)
    total = 0
    while text:
        if not (text[0] == "." or "0" <= text[0] <= "9"):
            raise _duration_error(orig)
        i = 0
        while i < len(text) and "0" <= text[i] <= "9":
            i += 1
        digits = text[:i].lstrip("0")
        if len(digits) > 19 or (digits and int(digits) > 2**63):  # Go's leadingInt overflows
            raise _duration_error(orig)
        whole = int(digits) if digits else 0
        pre = i > 0
        text = text[i:]
        frac, scale, post = 0, 1.0, False
        if text and text[0] == ".":
            text = text[1:]
            j = 0
            full = False  # Go's leadingFraction: once past int64, further digits are dropped
            while j < len(text) and "0" <= text[j] <= "9":
                if not full:
                    nxt = frac * 10 + int(text[j])
                    if frac > (2**63 - 1) // 10 or nxt > 2**63:
                        full = True
                    else:
                        frac, scale = nxt, scale * 10
                j += 1
            post = j > 0
            text = text[j:]
        if not pre and not post:
            raise _duration_error(orig)
        j = 0
        while j < len(text) and not (text[j] == "." or "0" <= text[j] <= "9"):
            j += 1
        unit = text[:j]
        text = text[j:]
        if not unit:
            raise BadRequest(f"time: missing unit in duration {_time_quote(orig)}")
        if unit not in _UNITS_NS:
            raise BadRequest(f"time: unknown unit {_time_quote(unit)} in duration "
                             f"{_time_quote(orig)}")
        mult = _UNITS_NS[unit]
        if whole > 2**63 // mult:
            raise _duration_error(orig)
        value = whole * mult
        if frac > 0:
            value += int(float(frac) * (float(mult) / scale))
            if value > 2**63:
                raise _duration_error(orig)
        total += value
        if total > 2**63:
            raise _duration_error(orig)
    if neg:
        return -total
    if total > _MAX_DURATION:
        raise _duration_error(orig)
    return total


def keep_alive_from_seconds(seconds: int | float) -> int:
    """A number of seconds as Ollama's Duration decodes it: negative is forever; otherwise
    ``time.Duration(seconds * 1e9)`` in float64, where a product past the int64 range saturates
    to Go's largest Duration, which is what Ollama's "forever" is. So every result is FOREVER
    or at most 2^63-1 ns, and an expiry is always a representable date (before year 2320)."""
    value = float(seconds)  # OverflowError for integers past float64: the caller's to report
    if value < 0:
        return FOREVER
    ns = value * 1e9
    if ns >= 2.0**63:
        return FOREVER
    return int(ns)


def parse_keep_alive(value: Any, struct: str = "GenerateRequest") -> int | None:
    """Request ``keep_alive`` → nanoseconds, ``FOREVER`` (-1), or None when absent. Go decodes
    a number as float64: one out of its range is the decoder's error."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRequest("Unsupported type: 'bool'")
    if isinstance(value, (int, float)):
        if not opts.fits_float64(value):
            raise opts.number_error(value, f"{struct}.keep_alive", "float64")
        return keep_alive_from_seconds(value)
    if isinstance(value, str):
        ns = parse_go_duration(value)
        return FOREVER if ns < 0 else ns
    raise BadRequest(f"Unsupported type: '{_kind(value)}'")


def _context(value: Any, struct: str) -> tuple[int, ...] | None:
    """``context`` ([]int): each element is decoded into Go's int (int64), so one past that
    range is the decoder's error; the runner refuses tokens outside the model's vocabulary."""
    if value is None:
        return None
    out = []
    for t in value:
        n = int(t or 0)
        if not opts.INT64_MIN <= n <= opts.INT64_MAX:
            raise opts.number_error(t, f"{struct}.context", "int")
        out.append(n)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    role: str
    content: str
    images: tuple[str, ...] = ()
    thinking: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_name: str = ""
    tool_call_id: str = ""

    def to_template(self) -> dict[str, Any]:
        """The message as chat templates see it (jinja ``messages`` entries)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [dict(c) for c in self.tool_calls]
        if self.tool_name:
            out["name"] = self.tool_name
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.thinking:
            out["thinking"] = self.thinking
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerateRequest:
    model: str
    prompt: str = ""
    suffix: str = ""
    system: str | None = None
    template: str | None = None
    context: tuple[int, ...] | None = None
    stream: bool = True
    raw: bool = False
    format: Any = None
    keep_alive: int | None = None
    images: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    think: Any = None
    truncate: bool = True
    shift: bool = True
    logprobs: bool = False
    top_logprobs: int = 0
    unknown_options: tuple[str, ...] = ()
    debug_render_only: bool = False  # Ollama's _debug_render_only: return the prompt, run nothing


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...] = ()
    stream: bool = True
    format: Any = None
    keep_alive: int | None = None
    tools: tuple[dict[str, Any], ...] = ()
    # pollama extension (Ollama ignores tool_choice, a much-requested feature): "auto" (text or
    # a call, Ollama's behaviour), "required" (the grammar forces a call), "none" (no tools),
    # or {"type": "function", "function": {"name": ...}} to force that tool.
    tool_choice: str = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)
    think: Any = None
    truncate: bool = True
    shift: bool = True
    logprobs: bool = False
    top_logprobs: int = 0
    unknown_options: tuple[str, ...] = ()
    debug_render_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRequest:
    model: str
    from_: str = ""
    files: Mapping[str, str] = field(default_factory=dict)
    adapters: Mapping[str, str] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    license: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    messages: tuple[Message, ...] = ()
    quantize: str = ""
    stream: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class PullRequest:
    model: str
    insecure: bool = False
    stream: bool = True


THINK_LEVELS = ("high", "medium", "low", "max")


def _think(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value in THINK_LEVELS:
        return value
    shown = value if isinstance(value, str) else repr(value)
    raise BadRequest(
        f'invalid think value: "{shown}" (must be "high", "medium", "low", "max", true, or false)'
    )


def _images(value: Any) -> tuple[str, ...]:
    """Base64 images (JSON ``[]byte``): checked as Go decodes them, kept as sent."""
    images = tuple(image or "" for image in value or ())  # null: empty, as Go leaves it
    for image in images:
        jsonwire.go_base64_decode(image)
    return images


def _top_logprobs(value: Any) -> int:
    n = int(value or 0)
    if not 0 <= n <= 20:
        raise BadRequest("top_logprobs must be between 0 and 20")
    return n


def _message(value: Any, struct: str) -> Message:
    where = f"{struct}.messages"
    if not isinstance(value, dict):
        raise _unmarshal_error(value, where, "api.Message")
    role = value.get("role")
    content = value.get("content")
    for key, v, gotype, check in (
        ("role", role, "string", _is_str),
        ("content", content, "string", _is_str),
        ("images", value.get("images"), "[]api.ImageData", _is_list_of(_is_str)),
        ("thinking", value.get("thinking"), "string", _is_str),
        ("tool_calls", value.get("tool_calls"), "[]api.ToolCall",
         _is_list_of(_is_obj, allow_null=False)),
        ("tool_name", value.get("tool_name"), "string", _is_str),
        ("tool_call_id", value.get("tool_call_id"), "string", _is_str),
    ):
        if v is not None and not check(v):
            raise _unmarshal_error(v, f"{where}.{key}", gotype, check)
    return Message(
        role=(role or "").lower(),
        content=content or "",
        images=_images(value.get("images")),
        thinking=value.get("thinking") or "",
        tool_calls=tuple(value.get("tool_calls") or ()),
        tool_name=value.get("tool_name") or "",
        tool_call_id=value.get("tool_call_id") or "",
    )


def _common(obj: Mapping[str, Any], struct: str) -> dict[str, Any]:
    return {
        "stream": obj.get("stream", True) if obj.get("stream") is not None else True,
        "format": obj.get("format"),
        "keep_alive": parse_keep_alive(obj.get("keep_alive"), struct),
        "options": opts.validate(obj.get("options"), struct=struct),
        "think": _think(obj.get("think")),
        "truncate": obj.get("truncate", True) if obj.get("truncate") is not None else True,
        "shift": obj.get("shift", True) if obj.get("shift") is not None else True,
        "logprobs": bool(obj.get("logprobs") or False),
        "top_logprobs": _top_logprobs(obj.get("top_logprobs")),
        "unknown_options": tuple(opts.unknown_keys(obj.get("options"))),
        "debug_render_only": bool(obj.get("_debug_render_only") or False),
    }


def parse_generate(body: Any) -> GenerateRequest:
    obj = _object(body, "GenerateRequest")
    return GenerateRequest(
        model=obj.get("model") or "",
        prompt=obj.get("prompt") or "",
        suffix=obj.get("suffix") or "",
        system=obj.get("system"),
        template=obj.get("template"),
        context=_context(obj.get("context"), "GenerateRequest"),
        raw=bool(obj.get("raw") or False),
        images=_images(obj.get("images")),
        **_common(obj, "GenerateRequest"),
    )


def parse_chat(body: Any) -> ChatRequest:
    obj = _object(body, "ChatRequest")
    messages = tuple(_message(m, "ChatRequest") for m in obj.get("messages") or ())
    tools = obj.get("tools") or ()
    if not all(isinstance(t, dict) for t in tools):
        raise BadRequest("json: cannot unmarshal non-object into Go struct field "
                         "ChatRequest.tools of type api.Tool")
    choice, tools = _tool_choice(obj.get("tool_choice"), tuple(tools))
    # Tool parameters become a grammar in the runner: refuse what would exhaust it now.
    schema_limits.check_tools(tools)
    return ChatRequest(
        model=obj.get("model") or "",
        messages=messages,
        tools=tools,
        tool_choice=choice,
        **_common(obj, "ChatRequest"),
    )


def _tool_choice(value: Any, tools: tuple[dict[str, Any], ...]
                 ) -> tuple[str, tuple[dict[str, Any], ...]]:
    """Normalise ``tool_choice``: ("auto"|"required", tools to offer)."""
    if value is None or value == "auto":
        return "auto", tools
    if value == "none":
        return "auto", ()
    if value == "required":
        return "required", tools
    if isinstance(value, dict):
        fn = value.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        chosen = tuple(t for t in tools if isinstance(t.get("function"), dict)
                       and t["function"].get("name") == name)
        if not chosen:
            raise BadRequest(f"tool_choice names a tool that was not sent: {name!r}")
        return "required", chosen
    raise BadRequest('tool_choice must be "auto", "none", "required" or '
                     '{"type": "function", "function": {"name": ...}}')


def _model_field(obj: Mapping[str, Any]) -> str:
    # Create/Delete/Show/Pull/Push accept the legacy ``name`` when ``model`` is empty (Ollama's
    # api/types.go).
    return str(obj.get("model") or obj.get("name") or "")


def parse_create(body: Any) -> CreateRequest:
    obj = _object(body, "CreateRequest")
    params = obj.get("parameters") or {}
    checked: dict[str, Any] = {}
    for key, value in params.items():
        if key not in opts.SPECS:
            continue
        v = opts.coerce(key, value, where="CreateRequest.parameters")
        if v is not None:
            checked[key] = v
    lic = obj.get("license")
    licenses = (lic,) if isinstance(lic, str) else tuple(lic or ())
    messages = tuple(_message(m, "CreateRequest") for m in obj.get("messages") or ())
    return CreateRequest(
        model=_model_field(obj),
        from_=obj.get("from") or "",
        files=dict(obj.get("files") or {}),
        adapters=dict(obj.get("adapters") or {}),
        template=obj.get("template"),
        system=obj.get("system"),
        license=licenses,
        parameters=checked,
        messages=messages,
        quantize=obj.get("quantize") or "",
        stream=obj.get("stream", True) if obj.get("stream") is not None else True,
    )


def parse_pull(body: Any) -> PullRequest:
    obj = _object(body, "PullRequest")
    return PullRequest(
        model=_model_field(obj),
        insecure=bool(obj.get("insecure") or False),
        stream=obj.get("stream", True) if obj.get("stream") is not None else True,
    )


def check_format(value: Any) -> Any:
    """``format``: "json", a JSON-schema object, or ""/null (Ollama's server/routes.go
    GenerateHandler). A schema must stay within core.schema_limits, since the runner turns it into
    a grammar."""
    if isinstance(value, dict):
        schema_limits.check_format(value)
    if value is None or value == "" or value == "json" or isinstance(value, dict):
        return value or None
    from . import jsonwire

    raw = jsonwire.dumps(value).decode()
    raise BadRequest(f'invalid format: {jsonwire.go_quote(raw)}; expected "json" or a valid '
                     "JSON Schema object")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowRequest:
    model: str
    verbose: bool = False
    system: str | None = None  # None: show the model's own SYSTEM


def parse_show(body: Any) -> ShowRequest:
    """``system`` overrides the shown SYSTEM only when non-empty (Ollama's GetModelInfo checks
    ``req.System != ""``; its Go client always sends ``"system": ""``). ``template`` is accepted
    and ignored: ShowRequest.Template is deprecated and has not been honoured since v0.2.6."""
    obj = _object(body, "ShowRequest")
    model = _model_field(obj)
    if not model:
        raise BadRequest("model is required")
    return ShowRequest(model=model, verbose=bool(obj.get("verbose") or False),
                       system=obj.get("system") or None)


def parse_copy(body: Any) -> tuple[str, str]:
    obj = _object(body, "CopyRequest")
    return str(obj.get("source") or ""), str(obj.get("destination") or "")


def parse_delete(body: Any) -> str:
    return _model_field(_object(body, "DeleteRequest"))

