"""Go's ``encoding/json`` ``Marshal`` of template values: compact, HTML-escaped, map keys
sorted, float64 formatted as Go formats it. (Named ``gojson`` so it never stands for the
standard library's ``json``.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from .strconv import format_float
from .values import SEQ_TYPES, GoStruct, sorted_keys, type_name

__all__ = ["JSONError", "json_string", "go_json"]


class JSONError(ValueError):
    """Go's ``UnsupportedValueError`` / ``UnsupportedTypeError`` (NaN, Inf, a func, too deep)."""


def _json_float(v: float) -> str:
    """Go's floatEncoder: shortest digits, ``%e`` outside [1e-6, 1e21) with ``e-07`` cut to
    ``e-7``, ``%f`` inside."""
    a = abs(v)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        s = format_float(v, "e", -1)
        if len(s) >= 4 and s[-4] == "e" and s[-3] == "-" and s[-2] == "0":
            s = s[:-2] + s[-1]
        return s
    return format_float(v, "f", -1)


_JSON_ESC: Final[Mapping[str, str]] = {
    '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
    "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029",
}


def json_string(s: str) -> str:
    out = ['"']
    for ch in s:
        e = _JSON_ESC.get(ch)
        if e is not None:
            out.append(e)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            out.append("\\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _json_empty(v: object) -> bool:
    if v is None or v is False or v == "":
        return True
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v == 0
    if isinstance(v, (dict, *SEQ_TYPES)):
        return len(v) == 0
    return False


def go_json(v: object, _depth: int = 0) -> str:
    """Go's ``json.Marshal`` of a template value (raises ``ValueError`` where Go errors)."""
    if _depth > 200:
        raise JSONError("json: unsupported value: too deep")
    custom = getattr(v, "go_marshal_json", None)
    if callable(custom):
        out = custom()
        assert isinstance(out, str)
        return out
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise JSONError(f"json: unsupported value: {format_float(v, 'g', -1)}")
        return _json_float(v)
    if isinstance(v, str):
        return json_string(v)
    if isinstance(v, GoStruct):
        parts = []
        for attr, name, omitempty in v.go_json_fields:
            val = getattr(v, attr)
            if omitempty and _json_empty(val):
                continue
            parts.append(json_string(name) + ":" + go_json(val, _depth + 1))
        return "{" + ",".join(parts) + "}"
    if isinstance(v, SEQ_TYPES):
        if isinstance(v, tuple) and not v:
            return "null"  # a nil typed slice (.ToolCalls, .Images when there are none)
        return "[" + ",".join(go_json(x, _depth + 1) for x in v) + "]"
    if isinstance(v, dict):
        keys = list(v) if getattr(v, "go_ordered", False) else sorted_keys(v)
        return "{" + ",".join(json_string(str(k)) + ":" + go_json(v[k], _depth + 1)
                              for k in keys) + "}"
    raise JSONError(f"json: unsupported type: {type_name(v)}")
