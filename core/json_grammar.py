"""Grammar pieces the JSON-schema converter bundled with llama-cpp-python lacks.

llama-cpp-python's ``SchemaConverter`` (an older copy of llama.cpp's Python converter) ignores
``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum`` on integers, so a schema's
bounds were not enforced and a valid-looking answer could fail validation. Ollama converts
schemas with llama.cpp's C++ ``json_schema_to_grammar``, which enforces them. This is a port
of that function's ``build_min_max_int`` (llama.cpp common/json-schema-to-grammar.cpp, MIT):
a GBNF expression that matches exactly the canonical decimal integers in a range (and
``-0`` when 0 is in it, which JSON allows). Ranges open on one side are built differently
from llama.cpp, whose recursion accepts wrong numbers there (see ``_at_least``).

``repetition`` is llama.cpp's ``build_repetition``: counted repetitions written as ``{m,n}`` for
llama.cpp's grammar parser to expand under its threshold, where the Python converter nests one
group per repetition and makes grammars that parser refuses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["int_range", "integer_bounds", "repetition"]

_MAX_DIGITS = 16  # as llama.cpp: longer numbers are not offered
# llama.cpp's converter keeps integer bounds in int64_t; a bound past that range on its open
# side bounds nothing a grammar can write, and astronomically long ones (1e308 is 309 digits)
# would only make rules as long.
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
_BEYOND = 2**64  # what a non-finite bound (1e400 decodes to inf) stands for


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


def integer_bounds(schema: Mapping[str, Any]) -> tuple[int | None, int | None] | None:
    """The inclusive integer bounds a schema sets, or None when it sets none. Exclusive bounds
    become inclusive ones (JSON-schema draft 6+ numbers; booleans of draft 4 are ignored). A
    minimum below the int64 range or a maximum above it is no bound; a minimum above it or a
    maximum below it is kept (core.schema_limits refuses such a schema)."""
    lo = hi = None
    if _is_num(schema.get("minimum")):
        lo = _ceil(schema["minimum"])
    elif _is_num(schema.get("exclusiveMinimum")):
        lo = _floor(schema["exclusiveMinimum"]) + 1
    if _is_num(schema.get("maximum")):
        hi = _floor(schema["maximum"])
    elif _is_num(schema.get("exclusiveMaximum")):
        hi = _ceil(schema["exclusiveMaximum"]) - 1
    if lo is not None and lo < INT64_MIN:
        lo = None
    if hi is not None and hi > INT64_MAX:
        hi = None
    if lo is None and hi is None:
        return None
    return lo, hi


def repetition(item: str, min_items: int, max_items: int | None, *, then: str = "") -> str:
    """GBNF for ``min_items`` to ``max_items`` (None: no limit) of ``item``, written with
    llama.cpp's ``{m,n}`` operator as its C++ converter's ``build_repetition`` writes it
    (llama.cpp common/json-schema-to-grammar.cpp, MIT). llama.cpp's grammar parser expands the
    operator itself under its repetition threshold: a maximum over 2000 becomes unbounded, a
    minimum over 2000 is refused (core.schema_limits refuses it first). llama-cpp-python's
    Python converter instead nests one group per repetition, which that parser refuses past
    about 1000.

    ``then`` names a rule for every item after the first (a separator and an item, such as
    ``"," space item``): a rule reference, not a group, since the parser's threshold counts the
    rules a repeated group creates."""
    if min_items < 0 or (max_items is not None and max_items < min_items):
        raise ValueError(f"invalid repetition {{{min_items},{max_items}}}")
    if max_items == 0:
        return ""
    if min_items == 0 and max_items == 1:
        return f"{item}?"
    if not then:
        if min_items == 1 and max_items is None:
            return f"{item}+"
        if min_items == 0 and max_items is None:
            return f"{item}*"
        if min_items == max_items == 1:
            return item
        return f"{item}{{{min_items},{'' if max_items is None else max_items}}}"
    rest = repetition(then, max(min_items - 1, 0), None if max_items is None else max_items - 1)
    result = f"{item} {rest}".strip()
    return f"( {result} )?" if min_items == 0 else result


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _floor(v: float) -> int:
    if not math.isfinite(v):
        return _BEYOND if v > 0 else -_BEYOND
    return int(v // 1)


def _ceil(v: float) -> int:
    if not math.isfinite(v):
        return _BEYOND if v > 0 else -_BEYOND
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
