"""JSON-RPC 2.0 over the native API: the pure layer of ``GET /api/ws`` and ``pollama stdio``.

Theory of operation. A transport (a WebSocket text message, an LSP-framed or NDJSON stdio
message; see ``jsonrpc_framing``) hands one message to ``decode``, which says what each part
of it needs, as h11 turns bytes into events:

- ``Call``: a request (or a notification) to a method of ``METHODS``. Each method is a REST
  route and ``params`` is that route's request body, so the adapter makes the REST request and
  turns its answer into JSON-RPC with ``outcome`` (a plain JSON answer) or, for an NDJSON
  stream, one ``stream_notification`` per line and ``stream_end`` for the last.
- ``Cancel``: ``$/cancelRequest`` (LSP's cancellation notification) naming a request id. The
  cancelled request is answered with ``cancelled(id)`` (-32800, LSP's RequestCancelled); one
  that has already been answered is left alone, as LSP says.
- ``Reply``: a message answered at once with an error object (parse error, invalid request,
  method not found for a request, invalid params for a request).
- ``Ignore``: a message that gets no answer: a notification to an unknown method or with
  unusable params (JSON-RPC never answers notifications), or a response from the client (we
  send no requests, so there is nothing to match it to; LSP ignores these too).

A message is a ``Single`` item or a ``Batch`` of them (one item per array element, in order).
A batch's answers go back as one array once every call in it has finished (JSON-RPC 2.0 §6);
``BatchState`` counts them in so the adapter keeps no bookkeeping. Stream notifications of a
call in a batch are sent as they come, not held for the array.

Decisions where the spec leaves room:

- ids are integers or strings, as in LSP. ``null``, fractional numbers (JSON-RPC: "SHOULD NOT
  contain fractional parts"), booleans, objects and arrays are an invalid request, answered
  with id null: a null id could not be told from a parse error's, nor cancelled.
- An invalid request whose id is valid is answered with that id (helpful, and allowed: the id
  was detected). Invalid structure is answered even without an id, as in the spec's examples.
- ``params`` absent or ``null`` is ``{}``; an array is invalid params (-32602) for these
  methods; any other JSON type is an invalid request (§4.2: params is a structured value).
- Requests to ``$/``-prefixed methods (``$/cancelRequest`` included, which is a notification)
  are method not found, as LSP says; notifications to unknown ``$/`` methods are ignored.
- Members beyond the spec's (``{"jsonrpc": "2.0", ..., "extra": 1}``) are ignored.
- JSON is decoded by ``jsonwire.loads_request``: strict (no NaN/Infinity, UTF-8 only, Go's
  error wording, lone surrogates become U+FFFD), so a call's params are exactly what the REST
  route would have read; a number too large for a float (``1e400``) is a parse error too, as
  in Go, so params always encode again. Size is bound by the transport (WebSocket message size, the
  LSP reader's ``max_message``); a batch holds at most ``MAX_BATCH`` calls.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Union

from . import jsonwire
from .errors import PollamaError

__all__ = [
    "API_ERROR", "CANCEL_METHOD", "INTERNAL_ERROR", "INVALID_PARAMS", "INVALID_REQUEST",
    "MAX_BATCH", "METHODS", "METHOD_NOT_FOUND", "PARSE_ERROR", "REQUEST_CANCELLED",
    "STREAM_METHOD", "Batch", "BatchState", "Call", "Cancel", "Id", "Ignore", "Item", "Message",
    "Reply", "Route", "Single", "api_error", "cancelled", "decode", "decode_value", "encode",
    "error", "error_text", "id_key", "needs_answer", "outcome", "parse_error", "result",
    "stream_end", "stream_notification", "streams", "valid_id"
]

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
API_ERROR: Final = -32000  # a REST error: data.status is its HTTP status
REQUEST_CANCELLED: Final = -32800  # LSP's RequestCancelled

CANCEL_METHOD: Final = "$/cancelRequest"
STREAM_METHOD: Final = "stream"

# More calls than this in one batch array is an invalid request, not unbounded work.
MAX_BATCH: Final = 1000
# A method name echoed in "Method not found" is cut to this many characters.
_MAX_NAME_ECHO = 100

Id = Union[int, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """The REST route a method stands for; ``streams``: it answers in NDJSON by default."""

    http_method: str
    path: str
    streams: bool


METHODS: Final[Mapping[str, Route]] = MappingProxyType({
    "chat": Route(http_method="POST", path="/api/chat", streams=True),
    "generate": Route(http_method="POST", path="/api/generate", streams=True),
    "embed": Route(http_method="POST", path="/api/embed", streams=False),
    "embeddings": Route(http_method="POST", path="/api/embeddings", streams=False),
    "list": Route(http_method="GET", path="/api/tags", streams=False),
    "show": Route(http_method="POST", path="/api/show", streams=False),
    "ps": Route(http_method="GET", path="/api/ps", streams=False),
    "pull": Route(http_method="POST", path="/api/pull", streams=True),
    "push": Route(http_method="POST", path="/api/push", streams=True),
    "create": Route(http_method="POST", path="/api/create", streams=True),
    "copy": Route(http_method="POST", path="/api/copy", streams=False),
    "delete": Route(http_method="DELETE", path="/api/delete", streams=False),
    "version": Route(http_method="GET", path="/api/version", streams=False),
})


def valid_id(value: object) -> bool:
    """An id we accept from a client: an integer (not a boolean) or a string."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def id_key(id: Id | None) -> tuple[str, Id | None]:
    """A dict key for a request id that keeps ``1`` and ``"1"`` apart (they are two ids)."""
    return ("str" if isinstance(id, str) else "int" if id is not None else "null", id)


# ---------------------------------------------------------------------------------------------
# Decoded items


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """A request (``notification=False``, ``id`` set) or a notification (``id`` None) to a
    method of ``METHODS``. ``params`` is the REST request body (``{}`` when absent)."""

    id: Id | None
    method: str
    params: dict[str, Any]
    notification: bool

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}")
        if self.notification != (self.id is None):
            raise ValueError("a notification has no id and a request has one")
        if self.id is not None and not valid_id(self.id):
            raise ValueError(f"invalid id {self.id!r}")
        if not isinstance(self.params, dict):
            raise ValueError("params must be a dict")

    @property
    def route(self) -> Route:
        return METHODS[self.method]


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    """``$/cancelRequest`` for the request with this id."""

    id: Id

    def __post_init__(self) -> None:
        if not valid_id(self.id):
            raise ValueError(f"invalid id {self.id!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A message answered at once: ``obj`` is the error response to send."""

    obj: dict[str, Any]

    def __post_init__(self) -> None:
        if self.obj.get("jsonrpc") != "2.0" or "error" not in self.obj or "id" not in self.obj:
            raise ValueError(f"not a JSON-RPC error response: {self.obj!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignore:
    """A message that gets no answer; ``reason`` is for logs."""

    reason: str


Item = Union[Call, Cancel, Reply, Ignore]


@dataclass(frozen=True, slots=True, kw_only=True)
class Single:
    """A message that is one object (or was answered as a whole: bad JSON, an empty batch)."""

    item: Item

    @property
    def items(self) -> tuple[Item, ...]:
        return (self.item,)


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """A batch array: one item per element, in order."""

    items: tuple[Item, ...]

    def __post_init__(self) -> None:
        if not 0 < len(self.items) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} items, not {len(self.items)}")

    @property
    def expected(self) -> int:
        """How many answers the batch's response array holds: its replies and requests."""
        return sum(1 for item in self.items if needs_answer(item))


Message = Union[Single, Batch]


def needs_answer(item: Item) -> bool:
    """Whether an item is answered: a ``Reply``, or a ``Call`` that is not a notification."""
    return isinstance(item, Reply) or (isinstance(item, Call) and not item.notification)


class BatchState:
    """Collects the answers of one batch: ``add`` each answer (a reply, a call's result, error
    or cancellation) as it is ready; the one that completes the batch returns the array to send.
    A batch that needs no answer (only notifications) sends nothing: nothing is ever added."""

    __slots__ = ("_expected", "_answers")

    def __init__(self, expected: int) -> None:
        if expected < 0:
            raise ValueError(f"expected must be non-negative, not {expected}")
        self._expected = expected
        self._answers: list[dict[str, Any]] = []

    @classmethod
    def for_message(cls, message: Message) -> BatchState | None:
        """A collector for a batch; None for a single message (its answer goes out alone)."""
        if isinstance(message, Batch):
            return cls(message.expected)
        return None

    @property
    def pending(self) -> int:
        return self._expected - len(self._answers)

    def add(self, response: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Take one answer; return the complete response array when it was the last one."""
        if self.pending <= 0:
            raise ValueError("this batch has all its answers already")
        self._answers.append(response)
        if self.pending == 0:
            return list(self._answers)
        return None

    def __repr__(self) -> str:
        return f"BatchState({self._expected})"


# ---------------------------------------------------------------------------------------------
# Builders


def result(id: Id | None, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "result": value}


def error(id: Id | None, code: int, message: str, data: Any = None) -> dict[str, Any]:
    """An error response; ``data`` is left out when None."""
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": id, "error": err}


def api_error(id: Id | None, status: int, message: str) -> dict[str, Any]:
    """A REST error: its ``{"error": message}`` text, its HTTP status in ``data.status``."""
    return error(id, API_ERROR, message, {"status": status})


def cancelled(id: Id | None) -> dict[str, Any]:
    return error(id, REQUEST_CANCELLED, "Request cancelled")


def parse_error(detail: str) -> dict[str, Any]:
    return error(None, PARSE_ERROR, f"Parse error: {detail}")


def stream_notification(id: Id | None, chunk: Any) -> dict[str, Any]:
    """One line of a call's NDJSON stream, as a ``stream`` notification naming the call."""
    return {"jsonrpc": "2.0", "method": STREAM_METHOD, "params": {"id": id, "chunk": chunk}}


def encode(obj: Any) -> bytes:
    """Compact JSON as Go writes it (``jsonwire.dumps``); frame it for the transport."""
    return jsonwire.dumps(obj)


# ---------------------------------------------------------------------------------------------
# REST answers to JSON-RPC answers


def streams(call: Call) -> bool:
    """Whether the call's answer is relayed as a stream: its route streams and ``stream`` is
    not false (REST streams when it is absent or null). Never for a notification: nothing is
    sent for one. A route may still answer one JSON object (``generate`` with an empty prompt
    loads the model and answers once), so the adapter goes by what the REST answer is."""
    return not call.notification and call.route.streams and call.params.get("stream") is not False


def error_text(body: Any, status: int) -> str:
    """The message of a REST error body: ``{"error": "..."}`` (or OpenAI's nested
    ``{"error": {"message": ...}}``), plain text (gin's ``404 page not found``), else the body
    as JSON; an empty body says its status."""
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, dict) and "error" in body:
        err = body["error"]
        if isinstance(err, str):
            return err
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
    if isinstance(body, str):
        return body.strip() or f"HTTP status {status}"
    if body is None or body == {}:
        return f"HTTP status {status}"
    try:
        return jsonwire.dumps(body).decode("utf-8")
    except (TypeError, ValueError):
        return f"HTTP status {status}"


def outcome(id: Id | None, status: int, body: Any) -> dict[str, Any]:
    """The answer to a call whose REST answer was one JSON body (None if it was empty): a 2xx
    is the result, anything else an API error carrying the REST error text and status."""
    if 200 <= status < 300:
        return result(id, body)
    return api_error(id, status, error_text(body, status))


def stream_end(id: Id | None, last: Any, *, status: int = 500) -> dict[str, Any]:
    """The answer that ends a stream, from its last NDJSON object: the result, or an API error
    when that object is an ``{"error": ...}`` line. Such a line comes after the REST answer's
    200 went out (Ollama streams a failed generation or pull this way), so its HTTP status is
    unknown: ``status`` (500, what Ollama answers for the same failure before streaming)
    unless the adapter knows better. A stream with no object at all is an error too."""
    if last is None:
        return api_error(id, status, "the stream ended without a response")
    if isinstance(last, dict) and "error" in last:
        return api_error(id, status, error_text(last, status))
    return result(id, last)


# ---------------------------------------------------------------------------------------------
# Decoding


def decode(data: str | bytes) -> Message:
    """Decode one transport message (a WebSocket text message, an LSP message body)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    try:
        value = jsonwire.loads_request(raw)
        _scan(value)
    except PollamaError as exc:
        return Single(item=Reply(obj=parse_error(exc.message)))
    except _NotJSON as exc:
        return Single(item=Reply(obj=parse_error(str(exc))))
    return _message(value)


def decode_value(value: Any) -> Message:
    """Decode a message already parsed as JSON (a line of ``ndjson.NDJSONReader``, the NDJSON
    stdio framing). Python's decoder there is lax, so what ``decode`` would refuse is refused
    here too: NaN and Infinity are a parse error, lone surrogates become U+FFFD. An
    ``NDJSONError`` from the reader for a bad line is answered with ``parse_error``."""
    try:
        if _scan(value, strings=True):
            value = _go_strings(value)
    except _NotJSON as exc:
        return Single(item=Reply(obj=parse_error(str(exc))))
    except RecursionError:
        return Single(item=Reply(obj=parse_error("nesting too deep")))
    return _message(value)


class _NotJSON(ValueError):
    pass


_SURROGATE = re.compile("[\ud800-\udfff]")


def _scan(value: Any, *, strings: bool = False) -> bool:
    """Refuse what JSON cannot carry back out: a number too large for a float (``1e400``
    decodes to infinity; Go refuses it too), NaN, non-JSON types. With ``strings``, say
    whether any string holds a lone surrogate. Iterative: as deep as the decoder went."""
    surrogates = False
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if strings and not surrogates and _SURROGATE.search(v):
                surrogates = True
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise _NotJSON(f"number out of range ({v})" if not math.isnan(v)
                               else "NaN is not a JSON number")
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
        elif not (v is None or isinstance(v, (bool, int))):
            raise _NotJSON(f"{type(v).__name__} is not a JSON value")
    return surrogates


def _go_strings(value: Any) -> Any:
    if isinstance(value, str):
        return jsonwire.go_text(value)
    if isinstance(value, list):
        return [_go_strings(v) for v in value]
    if isinstance(value, dict):
        return {jsonwire.go_text(k): _go_strings(v) for k, v in value.items()}
    return value


def _message(value: Any) -> Message:
    if isinstance(value, list):
        if not value:
            return Single(item=_invalid(None, "empty batch"))
        if len(value) > MAX_BATCH:
            return Single(item=_invalid(None, f"a batch holds at most {MAX_BATCH} calls, "
                                              f"not {len(value)}"))
        return Batch(items=tuple(_item(v) for v in value))
    return Single(item=_item(value))


def _invalid(id: Id | None, detail: str) -> Reply:
    return Reply(obj=error(id, INVALID_REQUEST, f"Invalid Request: {detail}"))


def _name(method: str) -> str:
    if len(method) > _MAX_NAME_ECHO:
        method = method[:_MAX_NAME_ECHO] + "…"
    return jsonwire.go_quote(method)


def _item(value: Any) -> Item:
    if not isinstance(value, dict):
        return _invalid(None, "expected an object")
    has_id = "id" in value
    id_ok = has_id and valid_id(value["id"])
    rpc_id: Id | None = value["id"] if id_ok else None
    if "method" not in value:
        if has_id and ("result" in value or "error" in value):
            return Ignore(reason="a response: the server sends no requests")
        return _invalid(rpc_id, 'no "method"')
    if value.get("jsonrpc") != "2.0":
        return _invalid(rpc_id, '"jsonrpc" must be "2.0"')
    method = value["method"]
    if not isinstance(method, str):
        return _invalid(rpc_id, '"method" must be a string')
    if has_id and not id_ok:
        return _invalid(None, '"id" must be an integer or a string')
    params = value.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, (dict, list)):
        return _invalid(rpc_id, '"params" must be an object or an array')

    if rpc_id is None:  # a notification: never answered
        if method == CANCEL_METHOD:
            if isinstance(params, dict) and valid_id(params.get("id")):
                return Cancel(id=params["id"])
            return Ignore(reason=f"{CANCEL_METHOD} without a valid params.id")
        if method not in METHODS:
            return Ignore(reason=f"unknown notification {_name(method)}")
        if not isinstance(params, dict):
            return Ignore(reason=f"notification {method} with params that are not an object")
        return Call(id=None, method=method, params=params, notification=True)

    if method not in METHODS:
        return Reply(obj=error(rpc_id, METHOD_NOT_FOUND, f"Method not found: {_name(method)}"))
    if not isinstance(params, dict):
        return Reply(obj=error(rpc_id, INVALID_PARAMS,
                               f"Invalid params: {method} takes an object "
                               f"(the body of {METHODS[method].http_method} "
                               f"{METHODS[method].path})"))
    return Call(id=rpc_id, method=method, params=params, notification=False)
