"""Go's ``fmt`` for template values: ``Sprint``, ``Sprintln`` and ``Sprintf`` (Go
``fmt/print.go``, ``fmt/format.go``) with flags, width, precision, ``*``, ``[n]`` argument
indexes and Go's error forms (``%!d(string=x)``), and ``printable``: how an action prints a
value (Go ``exec.printableValue`` then ``fmt.Fprint``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .strconv import UINT64_MAX, format_float, quote
from .values import SEQ_TYPES, GoStruct, sorted_keys, type_name

__all__ = ["go_sprint", "go_sprintln", "go_sprintf", "printable"]


class _Printer:
    __slots__ = ("buf", "plus", "minus", "sharp", "space", "zero", "plus_v", "sharp_v", "wid",
                 "prec", "erroring")

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.erroring = False
        self.clear()

    def clear(self) -> None:
        self.plus = self.minus = self.sharp = self.space = self.zero = False
        self.plus_v = self.sharp_v = False
        self.wid: int | None = None
        self.prec: int | None = None

    def out(self) -> str:
        return "".join(self.buf)

    # -- padding
    def write_padding(self, n: int) -> None:
        if n > 0:
            self.buf.append(("0" if self.zero else " ") * n)

    def pad(self, s: str) -> None:
        if not self.wid:
            self.buf.append(s)
            return
        width = self.wid - len(s)
        if width <= 0:
            self.buf.append(s)
        elif not self.minus:
            self.write_padding(width)
            self.buf.append(s)
        else:
            self.buf.append(s + " " * width)

    def truncate(self, s: str) -> str:
        if self.prec is not None and len(s) > self.prec:
            return s[:self.prec]
        return s

    # -- operands
    def print_arg(self, arg: object, verb: str) -> None:
        if arg is None:
            if verb in "Tv":
                self.pad("<nil>")
            else:
                self.bad_verb(verb, arg)
            return
        if verb == "T":
            self.pad(self.truncate(type_name(arg)))
            return
        if verb == "p":
            self.bad_verb(verb, arg)
            return
        if isinstance(arg, bool):
            self.fmt_bool(arg, verb)
        elif isinstance(arg, int):
            self.fmt_integer(arg, verb)
        elif isinstance(arg, float):
            self.fmt_float(arg, verb)
        elif isinstance(arg, str):
            self.fmt_string(arg, verb)
        elif not self.handle_methods(arg, verb):
            self.print_value(arg, verb, 0)

    def handle_methods(self, v: object, verb: str) -> bool:
        if self.erroring or self.sharp_v or verb not in "vsxXq":
            return False
        stringer = getattr(v, "go_string", None)
        if not callable(stringer):
            return False
        s = stringer()
        if not isinstance(s, str):
            return False
        self.fmt_string(s, verb)
        return True

    def print_value(self, v: object, verb: str, depth: int) -> None:
        if depth > 0 and v is not None and self.handle_methods(v, verb):
            return
        if depth > 200:
            self.buf.append("...")
            return
        if v is None:
            self.buf.append("interface {}(nil)" if self.sharp_v else "<nil>")
        elif isinstance(v, bool):
            self.fmt_bool(v, verb)
        elif isinstance(v, int):
            self.fmt_integer(v, verb)
        elif isinstance(v, float):
            self.fmt_float(v, verb)
        elif isinstance(v, str):
            self.fmt_string(v, verb)
        elif isinstance(v, dict):
            keys = sorted_keys(v)
            if self.sharp_v:
                self.buf.append(type_name(v) + "{")
                for i, k in enumerate(keys):
                    if i:
                        self.buf.append(", ")
                    self.print_value(k, verb, depth + 1)
                    self.buf.append(":")
                    self.print_value(v[k], verb, depth + 1)
                self.buf.append("}")
                return
            self.buf.append("map[")
            for i, k in enumerate(keys):
                if i:
                    self.buf.append(" ")
                self.print_value(k, verb, depth + 1)
                self.buf.append(":")
                self.print_value(v[k], verb, depth + 1)
            self.buf.append("]")
        elif isinstance(v, GoStruct):
            if v.go_pointer and depth == 0:
                self.buf.append("&")
            if self.sharp_v:
                self.buf.append(type_name(v).lstrip("*"))
            self.buf.append("{")
            for i, name in enumerate(v.go_fields):
                if i:
                    self.buf.append(", " if self.sharp_v else " ")
                if self.plus_v or self.sharp_v:
                    self.buf.append(name + ":")
                self.print_value(getattr(v, name), verb, depth + 1)
            self.buf.append("}")
        elif isinstance(v, SEQ_TYPES):
            if self.sharp_v:
                self.buf.append(type_name(v) + "{")
                for i, x in enumerate(v):
                    if i:
                        self.buf.append(", ")
                    self.print_value(x, verb, depth + 1)
                self.buf.append("}")
                return
            self.buf.append("[")
            for i, x in enumerate(v):
                if i:
                    self.buf.append(" ")
                self.print_value(x, verb, depth + 1)
            self.buf.append("]")
        else:
            self.buf.append(f"?{type_name(v)}")

    def bad_verb(self, verb: str, arg: object) -> None:
        self.erroring = True
        self.buf.append("%!" + verb + "(")
        if arg is not None:
            self.buf.append(type_name(arg) + "=")
            self.print_arg(arg, "v")
        else:
            self.buf.append("<nil>")
        self.buf.append(")")
        self.erroring = False

    def fmt_bool(self, v: bool, verb: str) -> None:
        if verb in "tv":
            self.pad("true" if v else "false")
        else:
            self.bad_verb(verb, v)

    def fmt_integer(self, v: int, verb: str) -> None:
        if verb in "vd":
            self.fmt_int(v, 10, verb, "0123456789abcdefx")
        elif verb == "b":
            self.fmt_int(v, 2, verb, "0123456789abcdefx")
        elif verb in "oO":
            self.fmt_int(v, 8, verb, "0123456789abcdefx")
        elif verb == "x":
            self.fmt_int(v, 16, verb, "0123456789abcdefx")
        elif verb == "X":
            self.fmt_int(v, 16, verb, "0123456789ABCDEFX")
        elif verb == "c":
            self.pad(chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF else "\ufffd")
        elif verb == "q":
            r = chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF else "\ufffd"
            self.pad(quote(r, ascii_only=self.plus, q="'"))
        elif verb == "U":
            s = f"U+{v:04X}" if v >= 0 else f"U+{v & UINT64_MAX:04X}"
            if self.prec is not None and len(s) - 2 < self.prec:
                s = "U+" + s[2:].rjust(self.prec, "0")
            if self.sharp and 0 <= v <= 0x10FFFF and chr(v).isprintable():
                s += " '" + chr(v) + "'"
            saved, self.zero = self.zero, False
            self.pad(s)
            self.zero = saved
        else:
            self.bad_verb(verb, v)

    def fmt_int(self, v: int, base: int, verb: str, digits: str) -> None:
        negative = v < 0
        u = -v if negative else v
        prec = 0
        if self.prec is not None:
            prec = self.prec
            if prec == 0 and u == 0:
                saved, self.zero = self.zero, False
                self.write_padding(self.wid or 0)
                self.zero = saved
                return
        elif self.zero and not self.minus and self.wid is not None:
            prec = self.wid
            if negative or self.plus or self.space:
                prec -= 1
        s = ""
        while u >= base:
            s = digits[u % base] + s
            u //= base
        s = digits[u] + s
        s = s.rjust(prec, "0")
        if self.sharp:
            if base == 2:
                s = "0b" + s
            elif base == 8 and s[0] != "0":
                s = "0" + s
            elif base == 16:
                s = "0" + digits[16] + s
        if verb == "O":
            s = "0o" + s
        if negative:
            s = "-" + s
        elif self.plus:
            s = "+" + s
        elif self.space:
            s = " " + s
        saved, self.zero = self.zero, False
        self.pad(s)
        self.zero = saved

    def fmt_float(self, v: float, verb: str) -> None:
        if verb == "v":
            self.float_(v, "g", -1)
        elif verb in "bgGxX":
            self.float_(v, verb, -1)
        elif verb in "feEF":
            self.float_(v, verb, 6)
        else:
            self.bad_verb(verb, v)

    def float_(self, v: float, verb: str, prec: int) -> None:
        if self.prec is not None:
            prec = self.prec
        num = format_float(v, verb, prec)
        if num[0] not in "+-":
            num = "+" + num
        if self.space and num[0] == "+" and not self.plus:
            num = " " + num[1:]
        if num[1] in "IN":
            saved, self.zero = self.zero, False
            if num[1] == "N" and not self.space and not self.plus:
                num = num[1:]
            self.pad(num)
            self.zero = saved
            return
        if self.sharp and verb != "b":
            num = _sharp_float(num, verb, prec)
        if self.plus or num[0] != "+":
            if self.zero and not self.minus and self.wid is not None and self.wid > len(num):
                self.buf.append(num[0])
                self.write_padding(self.wid - len(num))
                self.buf.append(num[1:])
                return
            self.pad(num)
            return
        self.pad(num[1:])

    def fmt_string(self, s: str, verb: str) -> None:
        if verb == "v":
            if self.sharp_v:
                self.pad(quote(self.truncate(s)))
            else:
                self.pad(self.truncate(s))
        elif verb == "s":
            self.pad(self.truncate(s))
        elif verb in "xX":
            self.fmt_sx(s, "0123456789abcdefx" if verb == "x" else "0123456789ABCDEFX")
        elif verb == "q":
            s = self.truncate(s)
            if self.sharp and "`" not in s and all(c == "\t" or (c >= " " and c != "\x7f")
                                                   for c in s) and "\ufeff" not in s:
                self.pad("`" + s + "`")
            else:
                self.pad(quote(s, ascii_only=self.plus))
        else:
            self.bad_verb(verb, s)

    def fmt_sx(self, s: str, digits: str) -> None:
        b = s.encode("utf-8", "replace")
        length = len(b)
        if self.prec is not None and self.prec < length:
            length = self.prec
        width = 2 * length
        if width > 0:
            if self.space:
                if self.sharp:
                    width *= 2
                width += length - 1
            elif self.sharp:
                width += 2
        else:
            if self.wid is not None:
                self.write_padding(self.wid)
            return
        if self.wid is not None and self.wid > width and not self.minus:
            self.write_padding(self.wid - width)
        out = []
        if self.sharp:
            out.append("0" + digits[16])
        for i in range(length):
            if self.space and i > 0:
                out.append(" ")
                if self.sharp:
                    out.append("0" + digits[16])
            out.append(digits[b[i] >> 4] + digits[b[i] & 15])
        self.buf.append("".join(out))
        if self.wid is not None and self.wid > width and self.minus:
            self.write_padding(self.wid - width)


def _sharp_float(num: str, verb: str, prec: int) -> str:
    """Go fmt's ``#`` flag on floats: always a decimal point; %g keeps trailing zeros."""
    digits = (6 if prec == -1 else prec) if verb in "vgGx" else 0
    tail = ""
    body = [num[0]]
    has_point = saw_nonzero = False
    for i in range(1, len(num)):
        c = num[i]
        if c == ".":
            has_point = True
        elif c in "pP" or (c in "eE" and verb not in "xX"):
            tail = num[i:]
            break
        else:
            if c != "0":
                saw_nonzero = True
            if saw_nonzero:
                digits -= 1
        body.append(c)
    out = "".join(body)
    if not has_point:
        if len(out) == 2 and out[1] == "0":
            digits -= 1
        out += "."
    if digits > 0:
        out += "0" * digits
    return out + tail


def _too_large(n: int) -> bool:
    return n > 1_000_000 or n < -1_000_000


def _parse_num(s: str, i: int, end: int) -> tuple[int | None, int]:
    """Go fmt.parsenum: (number or None, new index)."""
    if i >= end:
        return None, end
    num, j, found = 0, i, False
    while j < end and "0" <= s[j] <= "9":
        if _too_large(num):
            return None, end
        num = num * 10 + ord(s[j]) - 48
        found = True
        j += 1
    return (num if found else None), j


def go_sprint(args: Sequence[object]) -> str:
    """Go's ``fmt.Sprint``: spaces between operands when neither side is a string."""
    p = _Printer()
    prev_string = False
    for i, a in enumerate(args):
        is_string = isinstance(a, str)
        if i > 0 and not is_string and not prev_string:
            p.buf.append(" ")
        p.print_arg(a, "v")
        prev_string = is_string
    return p.out()


def go_sprintln(args: Sequence[object]) -> str:
    p = _Printer()
    for i, a in enumerate(args):
        if i > 0:
            p.buf.append(" ")
        p.print_arg(a, "v")
    p.buf.append("\n")
    return p.out()


def go_sprintf(fmt: str, args: Sequence[object]) -> str:
    """Go's ``fmt.Sprintf`` (flags, width, precision, ``*``, ``[n]`` indexes, error forms)."""
    p = _Printer()
    end = len(fmt)
    arg_num = 0
    after_index = False
    reordered = False
    i = 0
    n_args = len(args)

    def arg_number(arg_num: int, i: int) -> tuple[int, int, bool, bool]:
        # -> (arg_num, i, found, good)
        nonlocal reordered
        if i >= end or fmt[i] != "[":
            return arg_num, i, False, True
        reordered = True
        close = fmt.find("]", i + 1)
        if end - i < 3 or close < 0:
            return arg_num, i + 1, False, False
        num, j = _parse_num(fmt, i + 1, close)
        if num is None or j != close:
            return arg_num, close + 1, False, False
        index = num - 1
        if 0 <= index < n_args:
            return index, close + 1, True, True
        return arg_num, close + 1, True, False

    def int_from_arg(arg_num: int) -> tuple[int | None, int]:
        if arg_num < n_args:
            a = args[arg_num]
            if isinstance(a, int) and not isinstance(a, bool) and not _too_large(a):
                return a, arg_num + 1
            return None, arg_num + 1
        return None, arg_num

    while i < end:
        good = True
        j = fmt.find("%", i)
        if j < 0:
            p.buf.append(fmt[i:])
            break
        if j > i:
            p.buf.append(fmt[i:j])
        i = j + 1
        p.clear()
        while i < end:
            c = fmt[i]
            if c == "#":
                p.sharp = True
            elif c == "0":
                p.zero = not p.minus
            elif c == "+":
                p.plus = True
            elif c == "-":
                p.minus = True
                p.zero = False
            elif c == " ":
                p.space = True
            else:
                break
            i += 1
        arg_num, i, after_index, ok = arg_number(arg_num, i)
        good = good and ok
        if i < end and fmt[i] == "*":
            i += 1
            wid, arg_num = int_from_arg(arg_num)
            if wid is None:
                p.buf.append("%!(BADWIDTH)")
            else:
                p.wid = wid
                if wid < 0:
                    p.wid = -wid
                    p.minus = True
                    p.zero = False
            after_index = False
        else:
            p.wid, i = _parse_num(fmt, i, end)
            if after_index and p.wid is not None:
                good = False
        if i + 1 <= end and i < end and fmt[i] == ".":
            i += 1
            if after_index:
                good = False
            arg_num, i, after_index, ok = arg_number(arg_num, i)
            good = good and ok
            if i < end and fmt[i] == "*":
                i += 1
                prec, arg_num = int_from_arg(arg_num)
                if prec is not None and prec < 0:
                    prec = None
                p.prec = prec
                if prec is None:
                    p.buf.append("%!(BADPREC)")
                after_index = False
            else:
                prec, i = _parse_num(fmt, i, end)
                p.prec = 0 if prec is None else prec
        if not after_index:
            arg_num, i, after_index, ok = arg_number(arg_num, i)
            good = good and ok
        if i >= end:
            p.buf.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            p.buf.append("%")
        elif not good:
            p.buf.append("%!" + verb + "(BADINDEX)")
        elif arg_num >= n_args:
            p.buf.append("%!" + verb + "(MISSING)")
        else:
            if verb == "v":
                p.sharp_v, p.sharp = p.sharp, False
                p.plus_v, p.plus = p.plus, False
            p.print_arg(args[arg_num], verb)
            arg_num += 1
    if not reordered and arg_num < n_args:
        p.clear()
        p.buf.append("%!(EXTRA ")
        for k, a in enumerate(args[arg_num:]):
            if k:
                p.buf.append(", ")
            if a is None:
                p.buf.append("<nil>")
            else:
                p.buf.append(type_name(a) + "=")
                p.print_arg(a, "v")
        p.buf.append(")")
    return p.out()


def printable(v: object) -> str:
    """How an action prints a value (Go exec printableValue, then fmt.Fprint)."""
    if v is None:
        return "<no value>"
    if isinstance(v, str):
        return v
    p = _Printer()
    if isinstance(v, GoStruct) and v.go_pointer:
        if not p.handle_methods(v, "v"):
            p.print_value(v, "v", 1)  # pointers are dereferenced, so no "&"
        return p.out()
    p.print_arg(v, "v")
    return p.out()
