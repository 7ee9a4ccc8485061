"""The parts of Go's ``strconv`` that templates observe.

String literals (``Unquote``, ``Quote``/``QuoteToASCII``/``QuoteRune``), the syntax of integer and
float literals (``ParseUint``, ``ParseFloat`` with underscores and base prefixes) and float
formatting (``FormatFloat`` for every verb, shortest round-trip digits with precision -1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Final

__all__ = [
    "INT64_MIN", "INT64_MAX", "UINT64_MAX", "unquote", "quote", "parse_uint", "parse_float",
    "format_float",
]


_SIMPLE_ESCAPES: Final[Mapping[str, int]] = {
    "a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92,
}


def unquote(s: str) -> str:
    """strconv.Unquote for "...", `...` and '...' literals; ValueError("invalid syntax")."""
    if len(s) < 2 or s[0] != s[-1] or s[0] not in "\"'`":
        raise ValueError("invalid syntax")
    delim, body = s[0], s[1:-1]
    if delim == "`":
        if "`" in body:
            raise ValueError("invalid syntax")
        return body.replace("\r", "")
    if "\n" in body:
        raise ValueError("invalid syntax")
    out = bytearray()
    i, runes = 0, 0
    while i < len(body):
        c = body[i]
        if c == delim:
            raise ValueError("invalid syntax")
        if c != "\\":
            out += c.encode("utf-8", "replace")
            i += 1
            runes += 1
            continue
        i += 1
        if i >= len(body):
            raise ValueError("invalid syntax")
        e = body[i]
        i += 1
        runes += 1
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
        elif e in "'\"":
            if e != delim:
                raise ValueError("invalid syntax")
            out.append(ord(e))
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            hexd = body[i:i + n]
            if len(hexd) != n or any(ch not in "0123456789abcdefABCDEF" for ch in hexd):
                raise ValueError("invalid syntax")
            i += n
            v = int(hexd, 16)
            if e == "x":
                if delim == "'":
                    out += chr(v).encode("utf-8")
                else:
                    out.append(v)
            else:
                if v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
                    raise ValueError("invalid syntax")
                out += chr(v).encode("utf-8")
        elif "0" <= e <= "7":
            octd = body[i - 1:i + 2]
            if len(octd) != 3 or any(ch not in "01234567" for ch in octd):
                raise ValueError("invalid syntax")
            i += 2
            v = int(octd, 8)
            if v > 255:
                raise ValueError("invalid syntax")
            if delim == "'":
                out += chr(v).encode("utf-8")
            else:
                out.append(v)
        else:
            raise ValueError("invalid syntax")
    if delim == "'" and runes != 1:
        raise ValueError("invalid syntax")
    return out.decode("utf-8", "replace")


_QUOTE_SHORT: Final[Mapping[str, str]] = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
}


def quote(s: str, *, ascii_only: bool = False, q: str = '"') -> str:
    """strconv.Quote (and QuoteToASCII / QuoteRune with ``q="'"``)."""
    out = [q]
    for ch in s:
        c = ord(ch)
        if ch == q or ch == "\\":
            out.append("\\" + ch)
        elif ch.isprintable() and (not ascii_only or c < 0x80) and not 0xD800 <= c <= 0xDFFF:
            out.append(ch)
        elif ch in _QUOTE_SHORT:
            out.append(_QUOTE_SHORT[ch])
        elif c < 0x20 or c == 0x7F:
            out.append(f"\\x{c:02x}")
        elif 0xD800 <= c <= 0xDFFF:
            out.append("\\ufffd")
        elif c < 0x10000:
            out.append(f"\\u{c:04x}")
        else:
            out.append(f"\\U{c:08x}")
    out.append(q)
    return "".join(out)


INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
UINT64_MAX: Final = (1 << 64) - 1


def _underscore_ok(s: str) -> bool:
    """Go strconv.underscoreOK: underscores only between digits or after a base prefix."""
    saw, i = "^", 0
    if s[:1] in ("+", "-"):
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i, saw, hexa = 2, "0", s[1].lower() == "x"
    while i < len(s):
        c = s[i]
        if "0" <= c <= "9" or (hexa and "a" <= c.lower() <= "f"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
        i += 1
    return saw != "_"


def parse_uint(s: str) -> int | None:
    """strconv.ParseUint(s, 0, 64) without the range check (None: syntax error)."""
    if not s:
        return None
    s0, base = s, 10
    if s[0] == "0":
        if len(s) >= 3 and s[1].lower() in "box":
            base, s = {"b": 2, "o": 8, "x": 16}[s[1].lower()], s[2:]
        else:
            base, s = 8, s[1:]
    n, underscores = 0, False
    for c in s:
        if c == "_":
            underscores = True
            continue
        if "0" <= c <= "9":
            d = ord(c) - 48
        elif "a" <= c.lower() <= "z":
            d = ord(c.lower()) - 87
        else:
            return None
        if d >= base:
            return None
        n = n * base + d
    if underscores and not _underscore_ok(s0):
        return None
    return n


def parse_float(text: str) -> float | None:
    """strconv.ParseFloat(text, 64) for a number literal (None: syntax error or out of range)."""
    s = text
    if s[:1] in ("+", "-"):
        body = s[1:]
    else:
        body = s
    if not body or not (body[0].isdigit() or body[0] == "."):
        return None
    try:
        if body[:2].lower() == "0x":
            if "_" in s:
                s = s.replace("_", "")
            if "p" not in s.lower():
                return None
            f = float.fromhex(s)
        else:
            if "_" in s and not _underscore_ok(s):
                return None
            if any(c not in "0123456789.eE+-_" for c in s):
                return None
            f = float(s.replace("_", ""))
        return None if math.isinf(f) else f  # Go: ErrRange
    except (ValueError, OverflowError):
        return None


def _shortest_digits(v: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of abs(v) and the decimal point position."""
    if v == 0:
        return "", 0
    tup = Decimal(repr(abs(v))).as_tuple()
    ds = "".join(str(d) for d in tup.digits)
    exp = tup.exponent
    assert isinstance(exp, int)
    dp = len(ds) + exp
    ds = ds.rstrip("0")
    stripped = ds.lstrip("0")
    dp -= len(ds) - len(stripped)
    return stripped, dp


def _fmt_e(neg: bool, ds: str, dp: int, prec: int, e: str = "e") -> str:
    first = ds[0] if ds else "0"
    frac = (ds[1:] + "0" * prec)[:prec] if prec > 0 else ""
    exp = dp - 1 if ds else 0
    sign = "-" if exp < 0 else "+"
    exps = str(abs(exp)).rjust(2, "0")
    return ("-" if neg else "") + first + ("." + frac if prec > 0 else "") + e + sign + exps


def _fmt_f(neg: bool, ds: str, dp: int, prec: int) -> str:
    if dp > 0:
        whole = (ds[:dp] + "0" * dp)[:dp]
    else:
        whole = "0"
    s = ("-" if neg else "") + whole
    if prec > 0:
        frac = "".join(ds[dp + i] if 0 <= dp + i < len(ds) else "0" for i in range(prec))
        s += "." + frac
    return s


def format_float(v: float, verb: str, prec: int) -> str:
    """strconv.FormatFloat(v, verb, prec, 64) for verbs e E f F g G b x X."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    neg = math.copysign(1.0, v) < 0
    if verb == "b":
        m, e2 = math.frexp(abs(v))
        mant, exp2 = int(m * (1 << 53)), e2 - 53
        if v == 0:
            mant, exp2 = 0, -1074
        return ("-" if neg else "") + f"{mant}p{'+' if exp2 >= 0 else '-'}{abs(exp2)}"
    if verb in "xX":
        return _format_hex_float(v, prec, verb)
    if prec >= 0:
        if verb in "fF":
            return f"{v:.{prec}f}"
        if verb in "eE":
            return f"{v:.{prec}{verb}}"
        return f"{v:.{max(prec, 1)}{verb}}"
    ds, dp = _shortest_digits(v)
    e = "E" if verb in "EG" else "e"
    if verb in "eE":
        return _fmt_e(neg, ds, dp, max(len(ds) - 1, 0), e)
    if verb in "fF":
        return _fmt_f(neg, ds, dp, max(len(ds) - dp, 0))
    exp = dp - 1
    if ds and (exp < -4 or exp >= 6):  # shortest %g switches to %e at 1e-5 and 1e+06
        return _fmt_e(neg, ds, dp, len(ds) - 1, e)
    return _fmt_f(neg, ds, dp, max(len(ds) - dp, 0))


def _format_hex_float(v: float, prec: int, verb: str) -> str:
    """strconv's %x/%X for floats (Go fmtX): 1.xxxp±dd, rounded half to even."""
    mask64 = (1 << 64) - 1
    neg = math.copysign(1.0, v) < 0
    mant, exp = 0, 0
    if v != 0:
        m, e = math.frexp(abs(v))
        mant, exp = int(m * (1 << 53)) << 8, e - 1  # leading 1 at bit 60
    if 0 <= prec < 15:
        shift = prec * 4
        extra = (mant << shift) & ((1 << 60) - 1)
        mant >>= 60 - shift
        if extra | (mant & 1) > 1 << 59:
            mant += 1
        mant = (mant << (60 - shift)) & mask64
        if mant & (1 << 61):
            mant >>= 1
            exp += 1
    digits = "0123456789ABCDEF" if verb == "X" else "0123456789abcdef"
    out = ["-" if neg else "", "0", verb, str((mant >> 60) & 1)]
    mant = (mant << 4) & mask64
    if (prec < 0 and mant != 0) or prec > 0:
        out.append(".")
        n = 0
        while (prec < 0 and mant != 0) or (0 <= n < prec):
            out.append(digits[(mant >> 60) & 15])
            mant = (mant << 4) & mask64
            n += 1
    out.append("P" if verb == "X" else "p")
    out.append("-" if exp < 0 else "+")
    out.append(str(abs(exp)).rjust(2, "0"))
    return "".join(out)
