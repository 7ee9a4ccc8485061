"""JSON on the wire, the way Go's ``encoding/json`` writes it.

Ollama's clients sometimes compare bytes (template replays, stop tokens), so we match Go:
compact separators, UTF-8 kept as is, and ``<``, ``>``, ``&`` escaped as ``\\u003c``,
``\\u003e``, ``\\u0026`` (plus U+2028/U+2029). Decoding errors are phrased like Go's decoder
because clients and tests match on them (Ollama's api/types.go).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import BadRequest

__all__ = ["dumps", "go_base64_decode", "go_quote", "go_text", "loads_request"]

_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def go_text(text: str) -> str:
    """What Go holds for a JSON string: lone surrogates become U+FFFD."""
    return _SURROGATE_RE.sub("\ufffd", text)


def dumps(value: Any) -> bytes:
    """Encode like Go's json.Marshal (no trailing newline).

    Python's compact encoder matches Go for control characters; Go additionally escapes
    ``<``, ``>``, ``&``, U+2028 and U+2029, which occur only inside strings in compact output,
    so a textual replacement is exact.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return go_text(text).translate(_ESCAPES).encode("utf-8")


def _go_strings(value: Any) -> Any:
    if isinstance(value, str):
        return go_text(value)
    if isinstance(value, list):
        return [_go_strings(v) for v in value]
    if isinstance(value, dict):
        return {go_text(k): _go_strings(v) for k, v in value.items()}
    return value


def loads_request(body: bytes) -> Any:
    """Decode a request body. Empty ⇒ ``missing request body``; bad JSON ⇒ Go-style message."""
    if not body.strip():
        if not body:
            raise BadRequest("missing request body")
        raise BadRequest("unexpected end of JSON input")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("invalid character in request body: not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
        # \ud800-style escapes decode to lone surrogates; Go decodes them to U+FFFD.
        return _go_strings(value) if "\\u" in text else value
    except json.JSONDecodeError as exc:
        raise BadRequest(_go_syntax_message(text, exc)) from None
    except _ConstantRejected as exc:
        raise BadRequest(str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None


class _ConstantRejected(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # Go has no NaN/Infinity literals.
    raise _ConstantRejected(f"invalid character '{name[0]}' looking for beginning of value")


def _go_syntax_message(text: str, exc: json.JSONDecodeError) -> str:
    pos = exc.pos
    if pos >= len(text.rstrip()):
        return "unexpected end of JSON input"
    ch = text[pos]
    if exc.msg.startswith("Extra data"):
        return f"invalid character '{ch}' after top-level value"
    if exc.msg.startswith("Expecting value"):
        return f"invalid character '{ch}' looking for beginning of value"
    if exc.msg.startswith("Expecting property name"):
        return f"invalid character '{ch}' looking for beginning of object key string"
    if exc.msg.startswith("Expecting ',' delimiter"):
        where = "object" if _innermost_is_object(text, pos) else "array"
        return f"invalid character '{ch}' after {where} key:value pair" if where == "object" \
            else f"invalid character '{ch}' after array element"
    if exc.msg.startswith("Expecting ':' delimiter"):
        return f"invalid character '{ch}' after object key"
    return f"invalid character '{ch}' in JSON input"


def _innermost_is_object(text: str, pos: int) -> bool:
    depth_stack: list[str] = []
    in_str = False
    esc = False
    for c in text[:pos]:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth_stack.append(c)
        elif c in "]}" and depth_stack:
            depth_stack.pop()
    return bool(depth_stack) and depth_stack[-1] == "{"


def go_quote(text: str) -> str:
    """Go's %q / strconv.Quote for text (ASCII control characters escaped)."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_MAP = {c: i for i, c in enumerate(_B64)}


def go_base64_decode(text: str) -> bytes:
    """Decode a JSON string into ``[]byte`` as Go's encoding/json does (base64.StdEncoding:
    padded, CR/LF ignored). Bad input raises ``BadRequest`` with Go's error text,
    ``illegal base64 data at input byte N`` (N counts UTF-8 bytes)."""
    src = text.encode("utf-8", "surrogatepass")
    out = bytearray()
    si = 0

    def corrupt(at: int) -> BadRequest:
        return BadRequest(f"illegal base64 data at input byte {at}")

    while si < len(src):
        vals: list[int] = []
        end = False
        while len(vals) < 4:
            if si == len(src):
                if not vals:
                    return bytes(out)
                raise corrupt(si - len(vals))  # a short quantum: StdEncoding needs padding
            c = src[si]
            si += 1
            v = _B64_MAP.get(c)
            if v is not None:
                vals.append(v)
                continue
            if c in (0x0A, 0x0D):
                continue
            if c != 0x3D or len(vals) < 2:  # not "=", or "=" too early
                raise corrupt(si - 1)
            if len(vals) == 2:  # "==" expected: the first "=" is consumed
                while si < len(src) and src[si] in (0x0A, 0x0D):
                    si += 1
                if si == len(src):
                    raise corrupt(len(src))
                if src[si] != 0x3D:
                    raise corrupt(si - 1)
                si += 1
            while si < len(src) and src[si] in (0x0A, 0x0D):
                si += 1
            if si < len(src):
                raise corrupt(si)  # trailing data after padding
            end = True
            break
        n = len(vals)
        acc = 0
        for v in vals:
            acc = acc << 6 | v
        acc <<= 6 * (4 - n)
        out += acc.to_bytes(3, "big")[:n - 1]
        if end:
            break
    return bytes(out)
