"""Grammar pieces the JSON-schema converter bundled with llama-cpp-python lacks.

llama-cpp-python's ``SchemaConverter`` (an older copy of llama.cpp's Python converter) ignores
``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum`` on integers, so a schema's
bounds were not enforced and a valid-looking answer could fail validation. Ollama converts
schemas with llama.cpp's C++ ``json_schema_to_grammar``, which enforces them. This is a port
of that function's ``build_min_max_int`` (llama.cpp common/json-schema-to-grammar.cpp, MIT):
a GBNF expression that matches exactly the canonical decimal integers in a range (and
``-0`` when 0 is in it, which JSON allows). Ranges open on one side are built differently
from llama.cpp, whose recursion accepts wrong numbers there (see ``_at_least``).
"""

from __future__ import annotations

from typing import Any

_MAX_DIGITS = 16  # as llama.cpp: longer numbers are not offered


def int_range(minimum: int | None, maximum: int | None) -> str:
    """GBNF for the integers ``minimum <= n <= maximum`` written canonically (no leading
    zeros, ``-`` for negatives); ``None`` leaves that side open. At least one bound is set."""
    if minimum is None and maximum is None:
        raise ValueError("at least one of minimum or maximum must be set")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise ValueError(f"minimum {minimum} is greater than maximum {maximum}")
    if minimum is not None and maximum is not None:
        return _bounded(minimum, maximum)
    if minimum is not None:
        return _at_least(minimum)
    assert maximum is not None
    return _at_most(maximum)


def _bounded(lo: int, hi: int) -> str:
    out: list[str] = []
    _build(lo, hi, out)
    return "".join(out)


def _at_least(lo: int) -> str:
    """n >= lo: the numbers of lo's length from lo up, then every longer number. (llama.cpp
    builds this recursively and loses lengths: with minimum 110 it refused 1000-1099, with
    minimum 10100 it took 110; this form reuses only the bounded case.)"""
    if lo < 0:
        return f'"-" ({_bounded(0, -lo)}) | [0] | [1-9] [0-9]{{0,{_MAX_DIGITS - 1}}}'
    n = len(str(lo))
    out = _bounded(lo, int("9" * n))
    if n < _MAX_DIGITS:
        out += f" | [1-9] [0-9]{{{n},{_MAX_DIGITS - 1}}}"
    return out


def _at_most(hi: int) -> str:
    if hi >= 0:
        return f'"-" [1-9] [0-9]{{0,{_MAX_DIGITS - 1}}} | {_bounded(0, hi)}'
    return f'"-" ({_at_least(-hi)})'


def integer_bounds(schema: dict[str, Any]) -> tuple[int | None, int | None] | None:
    """The inclusive integer bounds a schema sets, or None when it sets none. Exclusive bounds
    become inclusive ones (JSON-schema draft 6+ numbers; booleans of draft 4 are ignored)."""
    lo = hi = None
    if _is_num(schema.get("minimum")):
        lo = _ceil(schema["minimum"])
    elif _is_num(schema.get("exclusiveMinimum")):
        lo = _floor(schema["exclusiveMinimum"]) + 1
    if _is_num(schema.get("maximum")):
        hi = _floor(schema["maximum"])
    elif _is_num(schema.get("exclusiveMaximum")):
        hi = _ceil(schema["exclusiveMaximum"]) - 1
    if lo is None and hi is None:
        return None
    return lo, hi


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _floor(v: float) -> int:
    return int(v // 1)


def _ceil(v: float) -> int:
    return -int((-v) // 1)


def _build(min_value: int, max_value: int, out: list[str]) -> None:
    """llama.cpp's ``build_min_max_int`` for a range bounded on both sides."""
    def digit_range(a: str, b: str) -> None:
        out.append(f"[{a}]" if a == b else f"[{a}-{b}]")

    def more_digits(min_digits: int, max_digits: int) -> None:
        out.append("[0-9]")
        if min_digits == max_digits == 1:
            return
        out.append("{" + str(min_digits))
        if max_digits != min_digits:
            out.append(f",{max_digits}")
        out.append("}")

    def uniform_range(a: str, b: str) -> None:
        i = 0
        while i < len(a) and i < len(b) and a[i] == b[i]:
            i += 1
        if i > 0:
            out.append(f'"{a[:i]}"')
        if i < len(a) and i < len(b):
            if i > 0:
                out.append(" ")
            sub_len = len(a) - i - 1
            if sub_len > 0:
                a_sub, b_sub = a[i + 1:], b[i + 1:]
                zeros, nines = "0" * sub_len, "9" * sub_len
                to_reached = False
                out.append("(")
                if a_sub == zeros:
                    digit_range(a[i], chr(ord(b[i]) - 1))
                    out.append(" ")
                    more_digits(sub_len, sub_len)
                else:
                    out.append(f"[{a[i]}] (")
                    uniform_range(a_sub, nines)
                    out.append(")")
                    if ord(a[i]) < ord(b[i]) - 1:
                        out.append(" | ")
                        if b_sub == nines:
                            digit_range(chr(ord(a[i]) + 1), b[i])
                            to_reached = True
                        else:
                            digit_range(chr(ord(a[i]) + 1), chr(ord(b[i]) - 1))
                        out.append(" ")
                        more_digits(sub_len, sub_len)
                if not to_reached:
                    out.append(" | ")
                    digit_range(b[i], b[i])
                    out.append(" ")
                    uniform_range(zeros, b_sub)
                out.append(")")
            else:
                out.append(f"[{a[i]}-{b[i]}]")

    if min_value < 0 and max_value < 0:
        out.append('"-" (')
        _build(-max_value, -min_value, out)
        out.append(")")
        return
    if min_value < 0:
        out.append('"-" (')
        _build(0, -min_value, out)
        out.append(") | ")
        min_value = 0
    min_s, max_s = str(min_value), str(max_value)
    for digits in range(len(min_s), len(max_s)):
        uniform_range(min_s, "9" * digits)
        min_s = "1" + "0" * digits
        out.append(" | ")
    uniform_range(min_s, max_s)
