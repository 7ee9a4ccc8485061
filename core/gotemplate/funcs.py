"""The functions templates can call: Go's builtins (``text/template/funcs.go``) and Ollama's
``FuncMap`` (``json``, ``currentDate``, ``yesterdayDate``, ``toTypeScriptType``).

Parameter kinds: ``"any"`` (``interface{}`` / ``reflect.Value``) or ``"string"``;
``impl(state, name, argv)`` returns the result or raises ``FuncError`` (Go: the function's
``error`` result), which execution reports as ``error calling NAME: ...``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .api import ToolCallArguments, ToolProperty
from .fmt import go_sprint, go_sprintf, go_sprintln, printable
from .gojson import JSONError, go_json
from .values import SEQ_TYPES, GoStruct, SliceView, Uint8, truth, type_name

if TYPE_CHECKING:
    from .exec import State

__all__ = ["FuncError", "Func", "FUNCS", "IfaceArg", "plain", "holds_any", "map_zero"]


class FuncError(Exception):
    """Error returned by a template function (Go: the function's ``error`` result)."""


def _basic_kind(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "invalid"


def _reflect_kind(v: object) -> str:
    if v is None:
        return "invalid"
    if isinstance(v, SEQ_TYPES):
        return "slice"
    if isinstance(v, dict):
        return "map"
    if isinstance(v, GoStruct):
        return "ptr" if v.go_pointer else "struct"
    return _basic_kind(v)


def _is_nil(v: object) -> bool:
    """Go nil: None, and empty typed slices (tuples, Tools...) or maps marked nil. Decoded JSON
    ``[]``/``{}`` (plain lists and dicts) are empty but not nil, as in Go."""
    if v is None:
        return True
    if getattr(v, "nil", False) is True:
        return True
    if isinstance(v, (tuple, list)) and type(v) is not list:
        return len(v) == 0
    return False


def _eq(a: object, *bs: object) -> bool:
    if not bs:
        raise FuncError("missing argument for comparison")
    k1 = _basic_kind(a)
    for b in bs:
        k2 = _basic_kind(b)
        equal = False
        if k1 != k2:
            if a is not None and b is not None:
                raise FuncError(
                    f"incompatible types for comparison: {type_name(a)} and {type_name(b)}")
        elif k1 != "invalid":
            equal = a == b
        else:
            r1, r2 = _reflect_kind(a), _reflect_kind(b)
            if r1 != r2 and "invalid" not in (r1, r2):
                raise FuncError(go_sprintf("non-comparable types %s: %v, %s: %v",
                                            [a, type_name(a), type_name(b), b]))
            if _is_nil(a) or _is_nil(b):
                equal = _is_nil(a) == _is_nil(b)
            elif r2 == "ptr":
                equal = a is b
            else:
                raise FuncError(go_sprintf("non-comparable type %s: %v", [b, type_name(b)]))
        if equal:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    k1 = _basic_kind(a)
    if k1 == "invalid":
        raise FuncError("invalid type for comparison")
    k2 = _basic_kind(b)
    if k2 == "invalid":
        raise FuncError("invalid type for comparison")
    if k1 != k2:
        raise FuncError(f"incompatible types for comparison: {type_name(a)} and {type_name(b)}")
    if k1 == "bool":
        raise FuncError("invalid type for comparison")
    return bool(a < b)


def _index_arg(index: object, cap: int) -> int:
    if isinstance(index, IfaceArg):
        if index.value is None:
            raise FuncError("cannot index slice/array with type interface {}")
        index = index.value
        if isinstance(index, bool) or not isinstance(index, int):
            raise FuncError("cannot index slice/array with type interface {}")
    if index is None:
        raise FuncError("cannot index slice/array with nil")
    if isinstance(index, bool) or not isinstance(index, int):
        raise FuncError(f"cannot index slice/array with type {type_name(index)}")
    if index < 0 or index > cap:
        raise FuncError(f"index out of range: {index}")
    return index


def plain(v: Any) -> Any:
    return v.value if isinstance(v, IfaceArg) else v


def _elem_type(v: object) -> str:
    return type_name(v).lstrip("*")


def _fn_index(st: State, name: str, argv: list[Any]) -> Any:
    item = argv[0]
    if item is None:
        raise FuncError("index of untyped nil")
    for index in argv[1:]:
        if isinstance(item, (str, *SEQ_TYPES)):
            seq: bytes | Sequence[Any] = (
                item.encode("utf-8", "replace") if isinstance(item, str) else item)
            x = _index_arg(index, len(seq))
            if x >= len(seq):
                kind = "string" if isinstance(item, str) else "slice"
                raise FuncError(f"reflect: {kind} index out of range")
            item = Uint8(seq[x]) if isinstance(item, str) else seq[x]
        elif isinstance(item, dict):
            if index is None:
                raise FuncError("value is nil; should be of type string")
            if not isinstance(index, str):
                raise FuncError(f"value has type {type_name(index)}; should be string")
            item = item[index] if index in item else map_zero(item)
        elif item is None:
            raise FuncError("index of nil pointer")
        else:
            raise FuncError(f"can't index item of type {_elem_type(item)}")
    return item


def _fn_slice(st: State, name: str, argv: list[Any]) -> Any:
    item, indexes = plain(argv[0]), argv[1:]
    if item is None:
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise FuncError("cannot 3-index slice a string")
        seq: bytes | Sequence[Any] = item.encode("utf-8", "replace")
    elif isinstance(item, SEQ_TYPES):
        seq = item
    else:
        raise FuncError(f"can't slice item of type {type_name(item)}")
    cap = len(seq)
    idx = [0, len(seq), 0]
    for i, index in enumerate(indexes):
        idx[i] = _index_arg(index, cap)
    if idx[0] > idx[1]:
        raise FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise FuncError(f"invalid slice index: {idx[1]} > {idx[2]}")
    if isinstance(item, str):
        return bytes(seq[idx[0]:idx[1]]).decode("utf-8", "replace")
    if type(item) in SEQ_TYPES:
        return SliceView(item, idx[0], idx[1])
    return type(item)(item[idx[0]:idx[1]])  # a typed slice keeps its type (String method)


def _fn_len(st: State, name: str, argv: list[Any]) -> Any:
    item = argv[0]
    if isinstance(item, IfaceArg):
        if item.value is None:
            raise FuncError("len of nil pointer")
        item = item.value
    if item is None:
        raise FuncError("reflect: call of reflect.Value.Type on zero Value")
    if isinstance(item, str):
        return len(item.encode("utf-8", "replace"))
    if isinstance(item, (dict, *SEQ_TYPES)):
        return len(item)
    raise FuncError(f"len of type {_elem_type(item)}")


def _eval_args(args: Sequence[Any]) -> str:
    """Go evalArgs: fmt.Sprint of the printable forms (nil prints as <no value>)."""
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    pieces: list[Any] = []
    for a in args:
        if a is None:
            pieces.append("<no value>")
        elif isinstance(a, GoStruct) and a.go_pointer:
            pieces.append(_PrintedAs(printable(a)))
        else:
            pieces.append(a)
    return go_sprint(pieces)


class _PrintedAs:
    """An already printed operand (Sprint spacing treats it as a non-string value)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def go_string(self) -> str:
        return self.text


_HTML_ESC: Final[Mapping[str, str]] = {
    "\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;",
}
_JS_ESC: Final[Mapping[str, str]] = {
    "\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026",
    "=": "\\u003D",
}
_URL_SAFE: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def _fn_html(st: State, name: str, argv: list[Any]) -> Any:
    return "".join(_HTML_ESC.get(c, c) for c in _eval_args(argv))


def _fn_js(st: State, name: str, argv: list[Any]) -> Any:
    out = []
    for c in _eval_args(argv):
        e = _JS_ESC.get(c)
        if e is not None:
            out.append(e)
        elif c < " ":
            out.append(f"\\u00{ord(c):02X}")
        elif c >= "\x80" and not c.isprintable():
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def _fn_urlquery(st: State, name: str, argv: list[Any]) -> Any:
    out = []
    for b in _eval_args(argv).encode("utf-8", "replace"):
        c = chr(b)
        if c in _URL_SAFE:
            out.append(c)
        elif c == " ":
            out.append("+")
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


def _fn_json(st: State, name: str, argv: list[Any]) -> Any:
    try:
        return go_json(argv[0])
    except JSONError:
        return ""  # Ollama ignores the marshal error: string(nil)


def _fn_current_date(st: State, name: str, argv: list[Any]) -> Any:
    return st.today.isoformat()  # the format argument is accepted and ignored, as Ollama does


def _fn_yesterday_date(st: State, name: str, argv: list[Any]) -> Any:
    return (st.today - _dt.timedelta(days=1)).isoformat()


def _fn_ts_type(st: State, name: str, argv: list[Any]) -> Any:
    v = argv[0]
    return v.to_typescript_type() if isinstance(v, ToolProperty) else "any"


def _fn_call(st: State, name: str, argv: list[Any]) -> Any:
    callee, fn = argv[0], argv[1]
    if fn is None:
        raise FuncError("call of nil")
    raise FuncError(f"non-function {callee} of type {type_name(fn)}")


@dataclass(frozen=True, slots=True)
class Func:
    """A callable's signature (Go's reflect.Type as the call sees it) and implementation."""

    fixed: tuple[str, ...]
    variadic: str | None
    impl: Callable[[State, str, list[Any]], Any]
    sees_iface: bool = False  # arguments from interface{} slots come wrapped in IfaceArg


class IfaceArg:
    """An argument that came out of an ``interface{}`` slot (a map[string]any value, a []any
    element). Only ``len`` and ``slice`` can tell (their error messages differ)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


FUNCS: Final[Mapping[str, Func]] = {
    "and": Func(("any",), "any", lambda st, n, a: None),  # short-circuit in State.eval_call
    "or": Func(("any",), "any", lambda st, n, a: None),
    "not": Func(("any",), None, lambda st, n, a: not truth(a[0])),
    "len": Func(("any",), None, _fn_len, sees_iface=True),
    "index": Func(("any",), "any", _fn_index),
    "slice": Func(("any",), "any", _fn_slice, sees_iface=True),
    "call": Func(("any",), "any", _fn_call),
    "print": Func((), "any", lambda st, n, a: go_sprint(a)),
    "println": Func((), "any", lambda st, n, a: go_sprintln(a)),
    "printf": Func(("string",), "any", lambda st, n, a: go_sprintf(a[0], a[1:])),
    "html": Func((), "any", _fn_html),
    "js": Func((), "any", _fn_js),
    "urlquery": Func((), "any", _fn_urlquery),
    "eq": Func(("any",), "any", lambda st, n, a: _eq(a[0], *a[1:])),
    "ne": Func(("any", "any"), None, lambda st, n, a: not _eq(a[0], a[1])),
    "lt": Func(("any", "any"), None, lambda st, n, a: _lt(a[0], a[1])),
    "le": Func(("any", "any"), None, lambda st, n, a: _lt(a[0], a[1]) or _eq(a[0], a[1])),
    "gt": Func(("any", "any"), None,
                lambda st, n, a: not (_lt(a[0], a[1]) or _eq(a[0], a[1]))),
    "ge": Func(("any", "any"), None, lambda st, n, a: not _lt(a[0], a[1])),
    "json": Func(("any",), None, _fn_json),
    "currentDate": Func((), "string", _fn_current_date),
    "yesterdayDate": Func((), "string", _fn_yesterday_date),
    "toTypeScriptType": Func(("any",), None, _fn_ts_type),
}


def holds_any(container: object) -> bool:
    """Whether the container's elements are Go ``interface{}`` values ([]any, map[string]any).

    Plain lists and dicts (decoded JSON) hold ``any``; tuples, typed lists and lists of
    structs stand for typed slices (``[]*api.Message``, ``[]string``...)."""
    if isinstance(container, SliceView):
        container = container.base
    return type(container) in (list, dict, ToolCallArguments)


def map_zero(m: Mapping[str, object]) -> object:
    zero = getattr(m, "go_zero", None)
    return zero() if callable(zero) else None
