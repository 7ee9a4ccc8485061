"""Go ``text/template`` for Modelfile TEMPLATEs, and Ollama's prompt rendering on top of it.

Theory of operation. ``parse(text)`` runs a port of Go's ``text/template/parse`` (lexer with
``{{-``/``-}}`` trimming, recursive-descent parser with Go's error messages) and then applies
Ollama's ``template.Parse`` touch-up: when the template mentions neither ``.Messages`` nor
``.Response``, an ``{{ .Response }}`` action is appended. ``Template.execute(data)`` walks the
tree like Go's ``exec.go`` with ``missingkey=zero``: Python ``None`` stands for Go's nil
interface/invalid value (printed as ``<no value>``), ``dict`` for ``map[string]interface{}``
(ranged and printed in sorted key order), ``list``/``tuple`` for slices, and ``GoStruct``
subclasses for the structs Ollama hands to templates (reference §5.1). Values print with a
port of Go's ``fmt`` (``%v``, ``printf`` verbs) and ``json`` marshals like ``encoding/json``.

On top, ``render_chat`` / ``render_suffix`` mirror Ollama's ``template.Execute``: messages mode
(one execution with ``.Messages``), legacy mode (one execution per system/user/assistant turn,
the last one cut after ``.Response`` so the model continues) and suffix (fill-in-middle) mode.

The engine is pure: the date for ``currentDate``/``yesterdayDate`` is passed in as ``today``.
Untrusted templates are bounded: output size, execution steps, and nesting depth (parse and
template recursion) are capped, and every failure is a ``TemplateError`` (HTTP 400).

Go's typing is modelled where templates can observe it: values in ``interface{}`` slots
(elements of decoded JSON lists/maps, missing map keys) are nil interfaces that error on field
access (``nil pointer evaluating interface {}.X``); tuples and typed lists are typed Go slices
that are nil when empty, while decoded JSON ``[]``/``{}`` are empty but not nil; JSON numbers are
float64, so ``eq .Function.Arguments.n 3`` is Go's "incompatible types" error. The test suite
replays vectors recorded from Go's own ``text/template``.

Known differences: complex constants are rejected; methods of data values cannot be called
(``call`` only reports Go's errors, as template data holds no functions); a pointer nested in
a printed value prints as its struct, not an address; Go's only execution cap is a template
depth of 100000. Ollama-level choices: ``.Tools``, each tool, its ``.Function`` and
``.Parameters`` print as JSON (the ``String()`` methods of Ollama's ``api`` types; Ollama HEAD
prints the inner structs Go-style); ``.Images`` are the base64 strings; in legacy mode an
``{{else}}`` after the cut is dropped where Ollama crashes; ``{{template "x"}}`` without a
pipeline is refused as Ollama refuses it (``parse_go`` accepts it).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as _dt
import enum
import functools
import math
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Final, NoReturn

from .errors import BadRequest
from .requests import Message

__all__ = [
    "MAX_OUTPUT", "MAX_STEPS", "MAX_DEPTH", "TemplateError", "Template", "parse", "parse_go",
    "uses",
    "render_chat", "render_suffix", "GoStruct", "TemplateMessage", "ToolCall",
    "ToolCallFunction", "ToolCallArguments", "Tools", "Tool", "ToolFunction",
    "ToolFunctionParameters", "ToolProperties", "ToolProperty", "PropertyType",
    "template_messages", "template_tools", "go_sprint", "go_sprintf", "go_json",
]

MAX_OUTPUT: Final = 16 * 1024 * 1024  # characters one execution may produce
MAX_STEPS: Final = 1_000_000  # nodes walked / commands evaluated in one execution
MAX_DEPTH: Final = 100  # nesting of parens and control structures, and of template calls


class TemplateError(BadRequest):
    """A Go template failed to parse or execute. ``go_message`` is Go's own error text."""

    def __init__(self, go_message: str) -> None:
        super().__init__(f"template error: {go_message}")
        self.go_message = go_message


class _ParseError(Exception):
    pass


class _ExecError(Exception):
    pass


class _FuncError(Exception):
    """Error returned by a template function (Go: the function's ``error`` result)."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Lexer (Go text/template/parse/lex.go)


class _T(enum.IntEnum):
    ERROR = 0
    BOOL = 1
    CHAR = 2
    CHAR_CONSTANT = 3
    COMPLEX = 4
    ASSIGN = 5
    DECLARE = 6
    EOF = 7
    FIELD = 8
    IDENTIFIER = 9
    LEFT_DELIM = 10
    LEFT_PAREN = 11
    NUMBER = 12
    PIPE = 13
    RAW_STRING = 14
    RIGHT_DELIM = 15
    RIGHT_PAREN = 16
    SPACE = 17
    STRING = 18
    TEXT = 19
    VARIABLE = 20
    KEYWORD = 21  # only delimits the keywords below
    BLOCK = 22
    BREAK = 23
    CONTINUE = 24
    DOT = 25
    DEFINE = 26
    ELSE = 27
    END = 28
    IF = 29
    NIL = 30
    RANGE = 31
    TEMPLATE = 32
    WITH = 33


_KEYWORDS: Final[Mapping[str, _T]] = {
    ".": _T.DOT, "block": _T.BLOCK, "break": _T.BREAK, "continue": _T.CONTINUE,
    "define": _T.DEFINE, "else": _T.ELSE, "end": _T.END, "if": _T.IF, "range": _T.RANGE,
    "nil": _T.NIL, "template": _T.TEMPLATE, "with": _T.WITH,
}

_SPACE: Final = " \t\r\n"
_EOF: Final = ""


@dataclass(frozen=True, slots=True)
class _Token:
    typ: _T
    val: str
    pos: int
    line: int

    def __str__(self) -> str:  # Go's item.String()
        if self.typ == _T.EOF:
            return "EOF"
        if self.typ == _T.ERROR:
            return self.val
        if self.typ > _T.KEYWORD:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return _quote(self.val[:10]) + "..."
        return _quote(self.val)


def _is_alnum(r: str) -> bool:
    return r != _EOF and (r == "_" or r.isalpha() or r.isdecimal())


class _Lexer:
    """Turns template text into tokens; stops after the first error (as Go's lexer does)."""

    def __init__(self, text: str) -> None:
        self.input = text
        self.pos = 0
        self.start = 0
        self.width = 0
        self.paren_depth = 0
        self.items: list[_Token] = []
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]

    def line(self, pos: int) -> int:
        return 1 + bisect.bisect_left(self.newlines, pos)

    def run(self) -> list[_Token]:
        state: Callable[[], Any] | None = self.lex_text
        while state is not None:
            state = state()
        return self.items

    # -- primitives
    def next(self) -> str:
        if self.pos >= len(self.input):
            self.width = 0
            return _EOF
        self.width = 1
        self.pos += 1
        return self.input[self.pos - 1]

    def peek(self) -> str:
        return self.input[self.pos] if self.pos < len(self.input) else _EOF

    def backup(self) -> None:
        self.pos -= self.width
        self.width = 0

    def emit(self, typ: _T) -> None:
        self.items.append(_Token(typ, self.input[self.start:self.pos], self.start,
                                 self.line(self.start)))
        self.start = self.pos

    def accept(self, valid: str) -> bool:
        r = self.next()
        if r != _EOF and r in valid:
            return True
        self.backup()
        return False

    def accept_run(self, valid: str) -> None:
        while True:
            r = self.next()
            if r == _EOF or r not in valid:
                break
        self.backup()

    def errorf(self, msg: str) -> Callable[[], Any] | None:
        self.items.append(_Token(_T.ERROR, msg, self.start, self.line(self.start)))
        self.items.append(_Token(_T.EOF, "", len(self.input), self.line(len(self.input))))
        return None

    def has_left_trim(self, i: int) -> bool:
        s = self.input
        return i + 1 < len(s) and s[i] == "-" and s[i + 1] in _SPACE

    def has_right_trim(self, i: int) -> bool:
        s = self.input
        return i + 1 < len(s) and s[i] in _SPACE and s[i + 1] == "-"

    def at_right_delim(self) -> tuple[bool, bool]:
        if self.has_right_trim(self.pos) and self.input.startswith("}}", self.pos + 2):
            return True, True
        if self.input.startswith("}}", self.pos):
            return True, False
        return False, False

    def left_trim_length(self, i: int) -> int:
        n = 0
        while i + n < len(self.input) and self.input[i + n] in _SPACE:
            n += 1
        return n

    def at_terminator(self) -> bool:
        r = self.peek()
        if r == _EOF or r in _SPACE or r in ".,|:)(":
            return True
        return self.input.startswith("}}", self.pos)

    # -- states
    def lex_text(self) -> Callable[[], Any] | None:
        x = self.input.find("{{", self.pos)
        if x >= 0:
            if x > self.pos:
                self.pos = x
                trim = 0
                if self.has_left_trim(x + 2):
                    seg = self.input[self.start:self.pos]
                    trim = len(seg) - len(seg.rstrip(_SPACE))
                text = self.input[self.start:self.pos - trim]
                if text:
                    self.items.append(_Token(_T.TEXT, text, self.start, self.line(self.start)))
                self.start = self.pos
            return self.lex_left_delim
        self.pos = len(self.input)
        if self.pos > self.start:
            self.emit(_T.TEXT)
        self.emit(_T.EOF)
        return None

    def lex_left_delim(self) -> Callable[[], Any] | None:
        self.pos += 2
        after = 2 if self.has_left_trim(self.pos) else 0
        if self.input.startswith("/*", self.pos + after):
            self.pos += after
            self.start = self.pos
            return self.lex_comment
        self.emit(_T.LEFT_DELIM)
        self.pos += after
        self.start = self.pos
        self.paren_depth = 0
        return self.lex_inside_action

    def lex_comment(self) -> Callable[[], Any] | None:
        self.pos += 2
        x = self.input.find("*/", self.pos)
        if x < 0:
            return self.errorf("unclosed comment")
        self.pos = x + 2
        delim, trim = self.at_right_delim()
        if not delim:
            return self.errorf("comment ends before closing delimiter")
        self.pos += 4 if trim else 2
        if trim:
            self.pos += self.left_trim_length(self.pos)
        self.start = self.pos
        return self.lex_text

    def lex_right_delim(self) -> Callable[[], Any] | None:
        _, trim = self.at_right_delim()
        if trim:
            self.pos += 2
            self.start = self.pos
        self.pos += 2
        self.emit(_T.RIGHT_DELIM)
        if trim:
            self.pos += self.left_trim_length(self.pos)
            self.start = self.pos
        return self.lex_text

    def lex_inside_action(self) -> Callable[[], Any] | None:
        delim, _ = self.at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return self.lex_right_delim
            return self.errorf("unclosed left paren")
        r = self.next()
        if r == _EOF:
            return self.errorf("unclosed action")
        if r in _SPACE:
            self.backup()
            return self.lex_space
        if r == "=":
            self.emit(_T.ASSIGN)
        elif r == ":":
            if self.next() != "=":
                return self.errorf("expected :=")
            self.emit(_T.DECLARE)
        elif r == "|":
            self.emit(_T.PIPE)
        elif r == '"':
            return self.lex_quote
        elif r == "`":
            return self.lex_raw_quote
        elif r == "$":
            return self.lex_variable
        elif r == "'":
            return self.lex_char
        elif r == "." and self.peek() != _EOF and not "0" <= self.peek() <= "9":
            return self.lex_field
        elif r in ".+-" or "0" <= r <= "9":
            self.backup()
            return self.lex_number
        elif _is_alnum(r):
            self.backup()
            return self.lex_identifier
        elif r == "(":
            self.paren_depth += 1
            self.emit(_T.LEFT_PAREN)
        elif r == ")":
            self.paren_depth -= 1
            if self.paren_depth < 0:
                return self.errorf("unexpected right paren")
            self.emit(_T.RIGHT_PAREN)
        elif r <= "\x7f" and r.isprintable():
            self.emit(_T.CHAR)
        else:
            return self.errorf(f"unrecognized character in action: {_sharp_u(r)}")
        return self.lex_inside_action

    def lex_space(self) -> Callable[[], Any] | None:
        num = 0
        while True:
            r = self.peek()
            if r == _EOF or r not in _SPACE:
                break
            self.next()
            num += 1
        # A trim-marked closing delimiter is " -}}": leave its space to lex_right_delim.
        if self.has_right_trim(self.pos - 1) and self.input.startswith("}}", self.pos + 1):
            self.pos -= 1
            if num == 1:
                return self.lex_right_delim
        self.emit(_T.SPACE)
        return self.lex_inside_action

    def lex_identifier(self) -> Callable[[], Any] | None:
        while True:
            r = self.next()
            if _is_alnum(r):
                continue
            self.backup()
            word = self.input[self.start:self.pos]
            if not self.at_terminator():
                return self.errorf(f"bad character {_sharp_u(r)}")
            kw = _KEYWORDS.get(word)
            if kw is not None and kw > _T.KEYWORD:
                self.emit(kw)
            elif word in ("true", "false"):
                self.emit(_T.BOOL)
            else:
                self.emit(_T.IDENTIFIER)
            return self.lex_inside_action

    def lex_field(self) -> Callable[[], Any] | None:
        return self.lex_field_or_variable(_T.FIELD)

    def lex_variable(self) -> Callable[[], Any] | None:
        if self.at_terminator():
            self.emit(_T.VARIABLE)
            return self.lex_inside_action
        return self.lex_field_or_variable(_T.VARIABLE)

    def lex_field_or_variable(self, typ: _T) -> Callable[[], Any] | None:
        if self.at_terminator():
            self.emit(_T.VARIABLE if typ == _T.VARIABLE else _T.DOT)
            return self.lex_inside_action
        r = _EOF
        while True:
            r = self.next()
            if not _is_alnum(r):
                self.backup()
                break
        if not self.at_terminator():
            return self.errorf(f"bad character {_sharp_u(r)}")
        self.emit(typ)
        return self.lex_inside_action

    def lex_char(self) -> Callable[[], Any] | None:
        return self._lex_escaped("'", _T.CHAR_CONSTANT, "unterminated character constant")

    def lex_quote(self) -> Callable[[], Any] | None:
        return self._lex_escaped('"', _T.STRING, "unterminated quoted string")

    def _lex_escaped(self, close: str, typ: Any, error: str) -> Callable[[], Any] | None:
        """Go's lexChar and lexQuote: up to ``close``; a backslash escapes the next rune;
        end of input or a newline first is ``error``."""
        while True:
            r = self.next()
            if r == "\\":
                r2 = self.next()
                if r2 != _EOF and r2 != "\n":
                    continue
                return self.errorf(error)
            if r == _EOF or r == "\n":
                return self.errorf(error)
            if r == close:
                break
        self.emit(typ)
        return self.lex_inside_action

    def lex_raw_quote(self) -> Callable[[], Any] | None:
        while True:
            r = self.next()
            if r == _EOF:
                return self.errorf("unterminated raw quoted string")
            if r == "`":
                break
        self.emit(_T.RAW_STRING)
        return self.lex_inside_action

    def lex_number(self) -> Callable[[], Any] | None:
        if not self.scan_number():
            return self.errorf(f"bad number syntax: {_quote(self.input[self.start:self.pos])}")
        if self.peek() in ("+", "-"):
            # Go accepts complex constants such as 1+2i; pollama does not model complex.
            if not self.scan_number() or self.input[self.pos - 1] != "i":
                return self.errorf(
                    f"bad number syntax: {_quote(self.input[self.start:self.pos])}")
            self.emit(_T.COMPLEX)
            return self.lex_inside_action
        self.emit(_T.NUMBER)
        return self.lex_inside_action

    def scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if _is_alnum(self.peek()):
            self.next()
            return False
        return True


def _sharp_u(r: str) -> str:
    """Go's ``%#U``: ``U+0041 'A'``."""
    if r == _EOF:
        return "U+FFFFFFFF"
    s = f"U+{ord(r):04X}"
    return f"{s} '{r}'" if r.isprintable() else s


# ---------------------------------------------------------------------------------------------
# Go string literals (strconv.Unquote / Quote)

_SIMPLE_ESCAPES: Final[Mapping[str, int]] = {
    "a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92,
}


def _unquote(s: str) -> str:
    """strconv.Unquote for "...", `...` and '...' literals; ValueError("invalid syntax")."""
    if len(s) < 2 or s[0] != s[-1] or s[0] not in "\"'`":
        raise ValueError("invalid syntax")
    quote, body = s[0], s[1:-1]
    if quote == "`":
        if "`" in body:
            raise ValueError("invalid syntax")
        return body.replace("\r", "")
    if "\n" in body:
        raise ValueError("invalid syntax")
    out = bytearray()
    i, runes = 0, 0
    while i < len(body):
        c = body[i]
        if c == quote:
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
            if e != quote:
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
                if quote == "'":
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
            if quote == "'":
                out += chr(v).encode("utf-8")
            else:
                out.append(v)
        else:
            raise ValueError("invalid syntax")
    if quote == "'" and runes != 1:
        raise ValueError("invalid syntax")
    return out.decode("utf-8", "replace")


_QUOTE_SHORT: Final[Mapping[str, str]] = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
}


def _quote(s: str, *, ascii_only: bool = False, q: str = '"') -> str:
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


# ---------------------------------------------------------------------------------------------
# Parse tree (Go text/template/parse/node.go). ``__str__`` is Go's Node.String().


@dataclass(frozen=True, slots=True, kw_only=True)
class _Node:
    pos: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TextNode(_Node):
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True, kw_only=True)
class ListNode(_Node):
    nodes: tuple[_Node, ...]

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldNode(_Node):
    ident: tuple[str, ...]

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


@dataclass(frozen=True, slots=True, kw_only=True)
class VariableNode(_Node):
    ident: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join(self.ident)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentifierNode(_Node):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class DotNode(_Node):
    def __str__(self) -> str:
        return "."


@dataclass(frozen=True, slots=True, kw_only=True)
class NilNode(_Node):
    def __str__(self) -> str:
        return "nil"


@dataclass(frozen=True, slots=True, kw_only=True)
class BoolNode(_Node):
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberNode(_Node):
    text: str
    is_int: bool = False
    is_uint: bool = False
    is_float: bool = False
    int_val: int = 0
    float_val: float = 0.0

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True, kw_only=True)
class StringNode(_Node):
    quoted: str
    text: str

    def __str__(self) -> str:
        return self.quoted


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandNode(_Node):
    args: tuple[_Node, ...]

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, PipeNode) else str(a) for a in self.args)


@dataclass(frozen=True, slots=True, kw_only=True)
class PipeNode(_Node):
    line: int
    is_assign: bool
    decl: tuple[VariableNode, ...]
    cmds: tuple[CommandNode, ...]

    def __str__(self) -> str:
        head = ""
        if self.decl:
            head = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return head + " | ".join(str(c) for c in self.cmds)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainNode(_Node):
    node: _Node
    fields: tuple[str, ...]

    def __str__(self) -> str:
        s = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return s + "".join("." + f for f in self.fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionNode(_Node):
    line: int
    pipe: PipeNode

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _BranchNode(_Node):
    line: int
    pipe: PipeNode
    list: ListNode
    else_list: ListNode | None
    keyword: ClassVar[str] = ""

    def __str__(self) -> str:
        s = f"{{{{{self.keyword} {self.pipe}}}}}{self.list}"
        if self.else_list is not None:
            s += "{{else}}" + str(self.else_list)
        return s + "{{end}}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IfNode(_BranchNode):
    keyword: ClassVar[str] = "if"


@dataclass(frozen=True, slots=True, kw_only=True)
class RangeNode(_BranchNode):
    keyword: ClassVar[str] = "range"


@dataclass(frozen=True, slots=True, kw_only=True)
class WithNode(_BranchNode):
    keyword: ClassVar[str] = "with"


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakNode(_Node):
    def __str__(self) -> str:
        return "{{break}}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContinueNode(_Node):
    def __str__(self) -> str:
        return "{{continue}}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateNode(_Node):
    line: int
    name: str
    pipe: PipeNode | None

    def __str__(self) -> str:
        if self.pipe is None:
            return "{{template " + _quote(self.name) + "}}"
        return "{{template " + _quote(self.name) + " " + str(self.pipe) + "}}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _EndNode(_Node):
    def __str__(self) -> str:
        return "{{end}}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _ElseNode(_Node):
    def __str__(self) -> str:
        return "{{else}}"


def _is_empty_tree(n: _Node | None) -> bool:
    if n is None:
        return True
    if isinstance(n, ListNode):
        return all(_is_empty_tree(c) for c in n.nodes)
    if isinstance(n, TextNode):
        return n.text.strip(" \t\r\n\v\f\x85\xa0") == ""
    return False


# ---------------------------------------------------------------------------------------------
# Parser (Go text/template/parse/parse.go)

_BUILTIN_NAMES: Final = frozenset({
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
})
_OLLAMA_NAMES: Final = frozenset({"json", "currentDate", "yesterdayDate", "toTypeScriptType"})
_FUNC_NAMES: Final = _BUILTIN_NAMES | _OLLAMA_NAMES

_OPERAND_START: Final = frozenset({
    _T.BOOL, _T.CHAR_CONSTANT, _T.COMPLEX, _T.DOT, _T.FIELD, _T.IDENTIFIER, _T.NUMBER,
    _T.NIL, _T.RAW_STRING, _T.STRING, _T.VARIABLE, _T.LEFT_PAREN,
})


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _Lexer(text).run()
        self.i = 0
        self.far = 0  # furthest token read: Go reports errors at the lexer's last item
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.depth = 0
        self.action_line = 0
        self.trees: dict[str, ListNode] = {}

    # -- token stream
    def next(self) -> _Token:
        i = min(self.i, len(self.toks) - 1)
        self.far = max(self.far, i)
        self.i += 1
        return self.toks[i]

    def backup(self, n: int = 1) -> None:
        self.i -= n

    def peek(self) -> _Token:
        i = min(self.i, len(self.toks) - 1)
        self.far = max(self.far, i)
        return self.toks[i]

    def next_non_space(self) -> _Token:
        while True:
            t = self.next()
            if t.typ != _T.SPACE:
                return t

    def peek_non_space(self) -> _Token:
        t = self.next_non_space()
        self.backup()
        return t

    def errorf(self, msg: str) -> NoReturn:
        raise _ParseError(f"template: :{self.toks[self.far].line}: {msg}")

    def expect(self, typ: _T, context: str) -> _Token:
        t = self.next_non_space()
        if t.typ != typ:
            self.unexpected(t, context)
        return t

    def unexpected(self, tok: _Token, context: str) -> NoReturn:
        if tok.typ == _T.ERROR:
            extra = ""
            if self.action_line != 0 and self.action_line != tok.line:
                extra = f" in action started at :{self.action_line}"
                if tok.val.endswith(" action"):
                    extra = extra[len(" in action"):]
            self.errorf(f"{tok.val}{extra}")
        self.errorf(f"unexpected {tok} in {context}")

    def nest(self, what: str) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.errorf(what)

    # -- grammar
    def parse(self) -> dict[str, ListNode]:
        nodes: list[_Node] = []
        while self.peek().typ != _T.EOF:
            if self.peek().typ == _T.LEFT_DELIM:
                mark = self.i
                self.next()
                if self.next_non_space().typ == _T.DEFINE:
                    self.parse_definition()
                    continue
                self.i = mark
            n = self.text_or_action()
            if isinstance(n, (_EndNode, _ElseNode)):
                self.errorf(f"unexpected {n}")
            nodes.append(n)
        self.add_tree("", ListNode(pos=0, nodes=tuple(nodes)))
        return self.trees

    def add_tree(self, name: str, root: ListNode) -> None:
        old = self.trees.get(name)
        if old is None or _is_empty_tree(old):
            self.trees[name] = root
        elif not _is_empty_tree(root):
            self.errorf(f"template: multiple definition of template {_quote(name)}")

    def sub_tree(self) -> tuple[ListNode, _Node]:
        saved = (self.vars, self.range_depth)
        self.vars, self.range_depth = ["$"], 0
        try:
            return self.item_list()
        finally:
            self.vars, self.range_depth = saved

    def parse_definition(self) -> None:
        context = "define clause"
        tok = self.next_non_space()
        if tok.typ not in (_T.STRING, _T.RAW_STRING):
            self.unexpected(tok, context)
        name = self.unquote(tok.val)
        self.expect(_T.RIGHT_DELIM, context)
        root, end = self.sub_tree()
        if not isinstance(end, _EndNode):
            self.errorf(f"unexpected {end} in {context}")
        self.add_tree(name, root)

    def unquote(self, s: str) -> str:
        try:
            return _unquote(s)
        except ValueError as e:
            self.errorf(str(e))

    def item_list(self) -> tuple[ListNode, _Node]:
        pos = self.peek_non_space().pos
        nodes: list[_Node] = []
        while self.peek_non_space().typ != _T.EOF:
            n = self.text_or_action()
            if isinstance(n, (_EndNode, _ElseNode)):
                return ListNode(pos=pos, nodes=tuple(nodes)), n
            nodes.append(n)
        self.errorf("unexpected EOF")

    def text_or_action(self) -> _Node:
        tok = self.next_non_space()
        if tok.typ == _T.TEXT:
            return TextNode(pos=tok.pos, text=tok.val)
        if tok.typ == _T.LEFT_DELIM:
            saved = self.action_line
            self.action_line = tok.line
            try:
                return self.action()
            finally:
                self.action_line = saved
        self.unexpected(tok, "input")

    def action(self) -> _Node:
        tok = self.next_non_space()
        t = tok.typ
        if t == _T.BLOCK:
            return self.block_control()
        if t in (_T.BREAK, _T.CONTINUE):
            word = "break" if t == _T.BREAK else "continue"
            after = self.next_non_space()
            if after.typ != _T.RIGHT_DELIM:
                self.unexpected(after, "{{" + word + "}}")
            if self.range_depth == 0:
                self.errorf(f"{{{{{word}}}}} outside {{{{range}}}}")
            if t == _T.BREAK:
                return BreakNode(pos=tok.pos)
            return ContinueNode(pos=tok.pos)
        if t == _T.ELSE:
            peek = self.peek_non_space()
            if peek.typ in (_T.IF, _T.WITH):
                return _ElseNode(pos=peek.pos)
            return _ElseNode(pos=self.expect(_T.RIGHT_DELIM, "else").pos)
        if t == _T.END:
            return _EndNode(pos=self.expect(_T.RIGHT_DELIM, "end").pos)
        if t == _T.IF:
            return self.control(IfNode, "if")
        if t == _T.RANGE:
            return self.control(RangeNode, "range")
        if t == _T.WITH:
            return self.control(WithNode, "with")
        if t == _T.TEMPLATE:
            return self.template_control()
        self.backup()
        tok = self.peek()
        return ActionNode(pos=tok.pos, line=tok.line, pipe=self.pipeline("command", _T.RIGHT_DELIM))

    def control(self, cls: type[_BranchNode], context: str) -> _BranchNode:
        mark = len(self.vars)
        self.nest("max expression depth exceeded")
        try:
            pipe = self.pipeline(context, _T.RIGHT_DELIM)
            if context == "range":
                self.range_depth += 1
            lst, nxt = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list: ListNode | None = None
            if isinstance(nxt, _ElseNode):
                # "{{else if}}" / "{{else with}}" nest a control that shares our {{end}}.
                if context == "if" and self.peek().typ == _T.IF:
                    self.next()
                    else_list = ListNode(pos=nxt.pos, nodes=(self.control(IfNode, "if"),))
                elif context == "with" and self.peek().typ == _T.WITH:
                    self.next()
                    else_list = ListNode(pos=nxt.pos, nodes=(self.control(WithNode, "with"),))
                else:
                    else_list, nxt = self.item_list()
                    if not isinstance(nxt, _EndNode):
                        self.errorf(f"expected end; found {nxt}")
            return cls(pos=pipe.pos, line=pipe.line, pipe=pipe, list=lst, else_list=else_list)
        finally:
            del self.vars[mark:]
            self.depth -= 1

    def template_name(self, tok: _Token, context: str) -> str:
        if tok.typ not in (_T.STRING, _T.RAW_STRING):
            self.unexpected(tok, context)
        return self.unquote(tok.val)

    def template_control(self) -> TemplateNode:
        context = "template clause"
        tok = self.next_non_space()
        name = self.template_name(tok, context)
        pipe: PipeNode | None = None
        if self.next_non_space().typ != _T.RIGHT_DELIM:
            self.backup()
            pipe = self.pipeline(context, _T.RIGHT_DELIM)
        return TemplateNode(pos=tok.pos, line=tok.line, name=name, pipe=pipe)

    def block_control(self) -> TemplateNode:
        context = "block clause"
        tok = self.next_non_space()
        name = self.template_name(tok, context)
        pipe = self.pipeline(context, _T.RIGHT_DELIM)
        self.nest("max expression depth exceeded")
        outer_far = self.far
        root, end = self.sub_tree()
        self.depth -= 1
        if not isinstance(end, _EndNode):
            self.far = outer_far  # Go raises this from the enclosing tree's token state
            self.errorf(f"unexpected {end} in {context}")
        self.add_tree(name, root)
        return TemplateNode(pos=tok.pos, line=tok.line, name=name, pipe=pipe)

    def pipeline(self, context: str, end: _T) -> PipeNode:
        tok = self.peek_non_space()
        decl: list[VariableNode] = []
        is_assign = False
        while True:  # declarations: "$x :=", "$x =", "$i, $v :="
            v = self.peek_non_space()
            if v.typ != _T.VARIABLE:
                break
            mark = self.i
            self.next()
            nxt = self.peek_non_space()
            if nxt.typ in (_T.ASSIGN, _T.DECLARE):
                is_assign = nxt.typ == _T.ASSIGN
                self.next_non_space()
                decl.append(VariableNode(pos=v.pos, ident=(v.val,)))
                self.vars.append(v.val)
                break
            if nxt.typ == _T.CHAR and nxt.val == ",":
                self.next_non_space()
                decl.append(VariableNode(pos=v.pos, ident=(v.val,)))
                self.vars.append(v.val)
                if context == "range" and len(decl) < 2:
                    if self.peek_non_space().typ in (_T.VARIABLE, _T.RIGHT_DELIM,
                                                     _T.RIGHT_PAREN):
                        continue
                    self.errorf("range can only initialize variables")
                self.errorf(f"too many declarations in {context}")
            self.i = mark
            break
        cmds: list[CommandNode] = []
        while True:
            t = self.next_non_space()
            if t.typ == end:
                if not cmds:
                    self.errorf(f"missing value for {context}")
                for i, c in enumerate(cmds[1:]):
                    if isinstance(c.args[0], (BoolNode, DotNode, NilNode, NumberNode, StringNode)):
                        self.errorf(f"non executable command in pipeline stage {i + 2}")
                return PipeNode(pos=tok.pos, line=tok.line, is_assign=is_assign,
                                decl=tuple(decl), cmds=tuple(cmds))
            if t.typ in _OPERAND_START:
                self.backup()
                cmds.append(self.command())
            else:
                self.unexpected(t, context)

    def command(self) -> CommandNode:
        pos = self.peek_non_space().pos
        args: list[_Node] = []
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            t = self.next()
            if t.typ == _T.SPACE:
                continue
            if t.typ in (_T.RIGHT_DELIM, _T.RIGHT_PAREN):
                self.backup()
            elif t.typ != _T.PIPE:
                self.unexpected(t, "operand")
            break
        if not args:
            self.errorf("empty command")
        return CommandNode(pos=pos, args=tuple(args))

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == _T.FIELD:
            pos = self.peek().pos
            fields: list[str] = []
            while self.peek().typ == _T.FIELD:
                fields.append(self.next().val[1:])
            if isinstance(node, FieldNode):
                return FieldNode(pos=pos, ident=node.ident + tuple(fields))
            if isinstance(node, VariableNode):
                return VariableNode(pos=pos, ident=node.ident + tuple(fields))
            if isinstance(node, (BoolNode, StringNode, NumberNode, NilNode, DotNode)):
                self.errorf(f"unexpected . after term {_quote(str(node))}")
            return ChainNode(pos=pos, node=node, fields=tuple(fields))
        return node

    def term(self) -> _Node | None:
        tok = self.next_non_space()
        t = tok.typ
        if t == _T.IDENTIFIER:
            if tok.val not in _FUNC_NAMES:
                self.errorf(f"function {_quote(tok.val)} not defined")
            return IdentifierNode(pos=tok.pos, name=tok.val)
        if t == _T.DOT:
            return DotNode(pos=tok.pos)
        if t == _T.NIL:
            return NilNode(pos=tok.pos)
        if t == _T.VARIABLE:
            if tok.val not in self.vars:
                self.errorf(f"undefined variable {_quote(tok.val)}")
            return VariableNode(pos=tok.pos, ident=(tok.val,))
        if t == _T.FIELD:
            return FieldNode(pos=tok.pos, ident=(tok.val[1:],))
        if t == _T.BOOL:
            return BoolNode(pos=tok.pos, value=tok.val == "true")
        if t in (_T.CHAR_CONSTANT, _T.COMPLEX, _T.NUMBER):
            return self.number(tok)
        if t == _T.LEFT_PAREN:
            self.nest("max expression depth exceeded")
            pipe = self.pipeline("parenthesized pipeline", _T.RIGHT_PAREN)
            self.depth -= 1
            return pipe
        if t in (_T.STRING, _T.RAW_STRING):
            return StringNode(pos=tok.pos, quoted=tok.val, text=self.unquote(tok.val))
        self.backup()
        return None

    def number(self, tok: _Token) -> NumberNode:
        text = tok.val
        if tok.typ == _T.CHAR_CONSTANT:
            try:
                r = _unquote(text)
            except ValueError:
                self.errorf(f"malformed character constant: {text}")
            c = ord(r) if len(r) == 1 else 0xFFFD
            return NumberNode(pos=tok.pos, text=text, is_int=True, is_uint=True, is_float=True,
                              int_val=c, float_val=float(c))
        if tok.typ == _T.COMPLEX or text.endswith("i"):
            self.errorf(f"complex numbers are not supported: {text}")
        num = _parse_go_number(text)
        if num is None:
            self.errorf(f"illegal number syntax: {_quote(text)}")
        if isinstance(num, str):
            self.errorf(num)
        is_int, is_uint, is_float, ival, fval = num
        return NumberNode(pos=tok.pos, text=text, is_int=is_int, is_uint=is_uint,
                          is_float=is_float, int_val=ival, float_val=fval)


_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_UINT64_MAX: Final = (1 << 64) - 1


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


def _go_parse_uint(s: str) -> int | None:
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


def _parse_go_number(text: str) -> tuple[bool, bool, bool, int, float] | str | None:
    """Go parse.newNumber for int/float literals: (is_int, is_uint, is_float, int, float)."""
    is_int = is_uint = is_float = False
    ival, fval = 0, 0.0
    u = _go_parse_uint(text)
    if u is not None and u <= _UINT64_MAX:
        is_uint = True
    body = text[1:] if text[:1] in ("+", "-") else text
    m = _go_parse_uint(body)
    n = None if m is None else (-m if text[:1] == "-" else m)
    if n is not None and _INT64_MIN <= n <= _INT64_MAX:
        is_int, ival = True, n
        if n == 0:
            is_uint = True
    if is_int:
        is_float, fval = True, float(ival)
    elif is_uint and u is not None:
        is_float, fval = True, float(u)
    else:
        f = _go_parse_float(text)
        if f is not None:
            if not any(c in text for c in ".eEpP"):
                return f"integer overflow: {text}"
            is_float, fval = True, f
            if math.isfinite(f) and f == int(f):
                i = int(f)
                if _INT64_MIN <= i <= _INT64_MAX:
                    is_int, ival = True, i
                if 0 <= i <= _UINT64_MAX:
                    is_uint = True
    if not (is_int or is_uint or is_float):
        return None
    return is_int, is_uint, is_float, ival, fval


def _go_parse_float(text: str) -> float | None:
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


# ---------------------------------------------------------------------------------------------
# Values. None is Go's nil interface (an invalid reflect.Value); dict is map[string]interface{};
# list/tuple are []interface{}; GoStruct subclasses are the structs Ollama passes to templates.


class GoStruct:
    """A Go struct in template data: attributes named as the Go fields, in Go order.

    ``go_type`` names the Go type in error messages and ``%T``; ``go_pointer`` marks values
    Go holds by pointer (printed with ``&`` by ``print``); ``go_json_fields`` lists
    ``(attribute, json name, omitempty)`` as the struct's json tags say.
    """

    __slots__ = ()
    go_type: ClassVar[str] = "struct {}"
    go_fields: ClassVar[tuple[str, ...]] = ()
    go_json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = ()
    go_pointer: ClassVar[bool] = False
    go_any_fields: ClassVar[frozenset[str]] = frozenset()  # fields of type interface{}

    def go_string(self) -> str | None:
        """Go's ``String()`` method when the type has one (used by ``%v``, ``%s``)."""
        return None

    def go_field(self, name: str) -> tuple[bool, Any]:
        if name in self.go_fields:
            return True, getattr(self, name)
        return False, None


class _SliceView(Sequence[Any]):
    """``slice`` of a list without copying (Go slices share their array), so templates that
    slice the message list once per message stay linear."""

    __slots__ = ("base", "start", "stop")
    base: Sequence[Any]
    start: int
    stop: int

    def __init__(self, base: Sequence[Any], start: int, stop: int) -> None:
        if isinstance(base, _SliceView):
            view = base
            base, start, stop = view.base, view.start + start, view.start + stop
        self.base, self.start, self.stop = base, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return list(self)[i]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.base[self.start + (i % len(self))]

    def __iter__(self) -> Iterator[Any]:
        for i in range(self.start, self.stop):
            yield self.base[i]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (list, tuple, _SliceView)) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


_SEQ: Final = (list, tuple, _SliceView)


def _type_name(v: Any) -> str:
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "uint8" if type(v) is _Uint8 else "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    t = getattr(v, "go_type", None)
    if isinstance(t, str):
        return t
    if isinstance(v, _SEQ):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return "interface {}"


class _Uint8(int):
    """A byte of a string (``index "abc" 0``), which Go types as uint8."""

    __slots__ = ()


def _truth(v: Any) -> bool:
    """Go template truth: false, 0, nil, and empty strings/slices/maps are false."""
    if v is None:
        return False
    if isinstance(v, (bool, int, float)):
        return v != 0  # NaN is true, as in Go
    if isinstance(v, (str, dict, *_SEQ)):
        return len(v) > 0
    return True


def _sorted_keys(d: Mapping[Any, Any]) -> list[Any]:
    """Go's fmtsort order for map keys: strings by bytes, numbers numerically."""
    try:
        return sorted(d)
    except TypeError:
        return sorted(d, key=lambda k: (type(k).__name__, str(k)))


# ---------------------------------------------------------------------------------------------
# Floats as Go's strconv formats them


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


def _format_float(v: float, verb: str, prec: int) -> str:
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


def _json_float(v: float) -> str:
    a = abs(v)
    ds, dp = _shortest_digits(v)
    neg = math.copysign(1.0, v) < 0
    if a != 0 and (a < 1e-6 or a >= 1e21):
        s = _fmt_e(neg, ds, dp, max(len(ds) - 1, 0))
        if len(s) >= 4 and s[-4] == "e" and s[-3] == "-" and s[-2] == "0":
            s = s[:-2] + s[-1]
        return s
    return _fmt_f(neg, ds, dp, max(len(ds) - dp, 0))


# ---------------------------------------------------------------------------------------------
# encoding/json Marshal (compact, HTML-escaped, map keys sorted)


class _JSONError(ValueError):
    pass


_JSON_ESC: Final[Mapping[str, str]] = {
    '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
    "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029",
}


def _json_string(s: str) -> str:
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


def _json_empty(v: Any) -> bool:
    if v is None or v is False or v == "":
        return True
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v == 0
    if isinstance(v, (dict, *_SEQ)):
        return len(v) == 0
    return False


def go_json(v: Any, _depth: int = 0) -> str:
    """Go's ``json.Marshal`` of a template value (raises ``ValueError`` where Go errors)."""
    if _depth > 200:
        raise _JSONError("json: unsupported value: too deep")
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
            raise _JSONError(f"json: unsupported value: {_format_float(v, 'g', -1)}")
        return _json_float(v)
    if isinstance(v, str):
        return _json_string(v)
    if isinstance(v, GoStruct):
        parts = []
        for attr, name, omitempty in v.go_json_fields:
            val = getattr(v, attr)
            if omitempty and _json_empty(val):
                continue
            parts.append(_json_string(name) + ":" + go_json(val, _depth + 1))
        return "{" + ",".join(parts) + "}"
    if isinstance(v, _SEQ):
        if isinstance(v, tuple) and not v:
            return "null"  # a nil typed slice (.ToolCalls, .Images when there are none)
        return "[" + ",".join(go_json(x, _depth + 1) for x in v) + "]"
    if isinstance(v, dict):
        keys = list(v) if getattr(v, "go_ordered", False) else _sorted_keys(v)
        return "{" + ",".join(_json_string(str(k)) + ":" + go_json(v[k], _depth + 1)
                              for k in keys) + "}"
    raise _JSONError(f"json: unsupported type: {_type_name(v)}")


# ---------------------------------------------------------------------------------------------
# fmt: Sprint, Sprintln, Sprintf (Go fmt/print.go, fmt/format.go)


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
    def print_arg(self, arg: Any, verb: str) -> None:
        if arg is None:
            if verb in "Tv":
                self.pad("<nil>")
            else:
                self.bad_verb(verb, arg)
            return
        if verb == "T":
            self.pad(self.truncate(_type_name(arg)))
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

    def handle_methods(self, v: Any, verb: str) -> bool:
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

    def print_value(self, v: Any, verb: str, depth: int) -> None:
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
            keys = _sorted_keys(v)
            if self.sharp_v:
                self.buf.append(_type_name(v) + "{")
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
                self.buf.append(_type_name(v).lstrip("*"))
            self.buf.append("{")
            for i, name in enumerate(v.go_fields):
                if i:
                    self.buf.append(", " if self.sharp_v else " ")
                if self.plus_v or self.sharp_v:
                    self.buf.append(name + ":")
                self.print_value(getattr(v, name), verb, depth + 1)
            self.buf.append("}")
        elif isinstance(v, _SEQ):
            if self.sharp_v:
                self.buf.append(_type_name(v) + "{")
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
            self.buf.append(f"?{_type_name(v)}")

    def bad_verb(self, verb: str, arg: Any) -> None:
        self.erroring = True
        self.buf.append("%!" + verb + "(")
        if arg is not None:
            self.buf.append(_type_name(arg) + "=")
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
            self.pad(_quote(r, ascii_only=self.plus, q="'"))
        elif verb == "U":
            s = f"U+{v:04X}" if v >= 0 else f"U+{v & _UINT64_MAX:04X}"
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
        num = _format_float(v, verb, prec)
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
                self.pad(_quote(self.truncate(s)))
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
                self.pad(_quote(s, ascii_only=self.plus))
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


def go_sprint(args: Sequence[Any]) -> str:
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


def go_sprintln(args: Sequence[Any]) -> str:
    p = _Printer()
    for i, a in enumerate(args):
        if i > 0:
            p.buf.append(" ")
        p.print_arg(a, "v")
    p.buf.append("\n")
    return p.out()


def go_sprintf(fmt: str, args: Sequence[Any]) -> str:
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
                p.buf.append(_type_name(a) + "=")
                p.print_arg(a, "v")
        p.buf.append(")")
    return p.out()


def _printable(v: Any) -> str:
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


# ---------------------------------------------------------------------------------------------
# Builtin and Ollama functions. Parameter kinds: "any" (interface{} / reflect.Value) or
# "string"; impl(state, name, argv) returns the result or raises _FuncError.

_MISSING: Final = object()  # Go's missingVal: "no final value from a previous command"


def _basic_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "invalid"


def _reflect_kind(v: Any) -> str:
    if v is None:
        return "invalid"
    if isinstance(v, _SEQ):
        return "slice"
    if isinstance(v, dict):
        return "map"
    if isinstance(v, GoStruct):
        return "ptr" if v.go_pointer else "struct"
    return _basic_kind(v)


def _is_nil(v: Any) -> bool:
    """Go nil: None, and empty typed slices (tuples, Tools...) or maps marked nil. Decoded JSON
    ``[]``/``{}`` (plain lists and dicts) are empty but not nil, as in Go."""
    if v is None:
        return True
    if getattr(v, "nil", False) is True:
        return True
    if isinstance(v, (tuple, list)) and type(v) is not list:
        return len(v) == 0
    return False


def _eq(a: Any, *bs: Any) -> bool:
    if not bs:
        raise _FuncError("missing argument for comparison")
    k1 = _basic_kind(a)
    for b in bs:
        k2 = _basic_kind(b)
        truth = False
        if k1 != k2:
            if a is not None and b is not None:
                raise _FuncError(
                    f"incompatible types for comparison: {_type_name(a)} and {_type_name(b)}")
        elif k1 != "invalid":
            truth = a == b
        else:
            r1, r2 = _reflect_kind(a), _reflect_kind(b)
            if r1 != r2 and "invalid" not in (r1, r2):
                raise _FuncError(go_sprintf("non-comparable types %s: %v, %s: %v",
                                            [a, _type_name(a), _type_name(b), b]))
            if _is_nil(a) or _is_nil(b):
                truth = _is_nil(a) == _is_nil(b)
            elif r2 == "ptr":
                truth = a is b
            else:
                raise _FuncError(go_sprintf("non-comparable type %s: %v", [b, _type_name(b)]))
        if truth:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    k1 = _basic_kind(a)
    if k1 == "invalid":
        raise _FuncError("invalid type for comparison")
    k2 = _basic_kind(b)
    if k2 == "invalid":
        raise _FuncError("invalid type for comparison")
    if k1 != k2:
        raise _FuncError(f"incompatible types for comparison: {_type_name(a)} and {_type_name(b)}")
    if k1 == "bool":
        raise _FuncError("invalid type for comparison")
    return bool(a < b)


def _index_arg(index: Any, cap: int) -> int:
    if isinstance(index, _IfaceArg):
        if index.value is None:
            raise _FuncError("cannot index slice/array with type interface {}")
        index = index.value
        if isinstance(index, bool) or not isinstance(index, int):
            raise _FuncError("cannot index slice/array with type interface {}")
    if index is None:
        raise _FuncError("cannot index slice/array with nil")
    if isinstance(index, bool) or not isinstance(index, int):
        raise _FuncError(f"cannot index slice/array with type {_type_name(index)}")
    if index < 0 or index > cap:
        raise _FuncError(f"index out of range: {index}")
    return index


def _plain(v: Any) -> Any:
    return v.value if isinstance(v, _IfaceArg) else v


def _elem_type(v: Any) -> str:
    return _type_name(v).lstrip("*")


def _fn_index(st: _State, name: str, argv: list[Any]) -> Any:
    item = argv[0]
    if item is None:
        raise _FuncError("index of untyped nil")
    for index in argv[1:]:
        if isinstance(item, (str, *_SEQ)):
            seq: Any = item.encode("utf-8", "replace") if isinstance(item, str) else item
            x = _index_arg(index, len(seq))
            if x >= len(seq):
                kind = "string" if isinstance(item, str) else "slice"
                raise _FuncError(f"reflect: {kind} index out of range")
            item = _Uint8(seq[x]) if isinstance(item, str) else seq[x]
        elif isinstance(item, dict):
            if index is None:
                raise _FuncError("value is nil; should be of type string")
            if not isinstance(index, str):
                raise _FuncError(f"value has type {_type_name(index)}; should be string")
            item = item[index] if index in item else _map_zero(item)
        elif item is None:
            raise _FuncError("index of nil pointer")
        else:
            raise _FuncError(f"can't index item of type {_elem_type(item)}")
    return item


def _fn_slice(st: _State, name: str, argv: list[Any]) -> Any:
    item, indexes = _plain(argv[0]), argv[1:]
    if item is None:
        raise _FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise _FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise _FuncError("cannot 3-index slice a string")
        seq: Any = item.encode("utf-8", "replace")
    elif isinstance(item, _SEQ):
        seq = item
    else:
        raise _FuncError(f"can't slice item of type {_type_name(item)}")
    cap = len(seq)
    idx = [0, len(seq), 0]
    for i, index in enumerate(indexes):
        idx[i] = _index_arg(index, cap)
    if idx[0] > idx[1]:
        raise _FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise _FuncError(f"invalid slice index: {idx[1]} > {idx[2]}")
    if isinstance(item, str):
        return bytes(seq[idx[0]:idx[1]]).decode("utf-8", "replace")
    if type(item) in _SEQ:
        return _SliceView(item, idx[0], idx[1])
    return type(item)(item[idx[0]:idx[1]])  # a typed slice keeps its type (String method)


def _fn_len(st: _State, name: str, argv: list[Any]) -> Any:
    item = argv[0]
    if isinstance(item, _IfaceArg):
        if item.value is None:
            raise _FuncError("len of nil pointer")
        item = item.value
    if item is None:
        raise _FuncError("reflect: call of reflect.Value.Type on zero Value")
    if isinstance(item, str):
        return len(item.encode("utf-8", "replace"))
    if isinstance(item, (dict, *_SEQ)):
        return len(item)
    raise _FuncError(f"len of type {_elem_type(item)}")


def _eval_args(args: Sequence[Any]) -> str:
    """Go evalArgs: fmt.Sprint of the printable forms (nil prints as <no value>)."""
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    pieces: list[Any] = []
    for a in args:
        if a is None:
            pieces.append("<no value>")
        elif isinstance(a, GoStruct) and a.go_pointer:
            pieces.append(_PrintedAs(_printable(a)))
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


def _fn_html(st: _State, name: str, argv: list[Any]) -> Any:
    return "".join(_HTML_ESC.get(c, c) for c in _eval_args(argv))


def _fn_js(st: _State, name: str, argv: list[Any]) -> Any:
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


def _fn_urlquery(st: _State, name: str, argv: list[Any]) -> Any:
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


def _fn_json(st: _State, name: str, argv: list[Any]) -> Any:
    try:
        return go_json(argv[0])
    except _JSONError:
        return ""  # Ollama ignores the marshal error: string(nil)


def _fn_current_date(st: _State, name: str, argv: list[Any]) -> Any:
    return st.today.isoformat()  # the format argument is accepted and ignored, as Ollama does


def _fn_yesterday_date(st: _State, name: str, argv: list[Any]) -> Any:
    return (st.today - _dt.timedelta(days=1)).isoformat()


def _fn_ts_type(st: _State, name: str, argv: list[Any]) -> Any:
    v = argv[0]
    return v.to_typescript_type() if isinstance(v, ToolProperty) else "any"


def _fn_call(st: _State, name: str, argv: list[Any]) -> Any:
    callee, fn = argv[0], argv[1]
    if fn is None:
        raise _FuncError("call of nil")
    raise _FuncError(f"non-function {callee} of type {_type_name(fn)}")


@dataclass(frozen=True, slots=True)
class _Func:
    fixed: tuple[str, ...]
    variadic: str | None
    impl: Callable[[_State, str, list[Any]], Any]


class _IfaceArg:
    """An argument that came out of an ``interface{}`` slot (a map[string]any value, a []any
    element). Only ``len`` and ``slice`` can tell (their error messages differ)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_FUNCS: Final[Mapping[str, _Func]] = {
    "and": _Func(("any",), "any", lambda st, n, a: None),  # short-circuits in _eval_call
    "or": _Func(("any",), "any", lambda st, n, a: None),
    "not": _Func(("any",), None, lambda st, n, a: not _truth(a[0])),
    "len": _Func(("any",), None, _fn_len),
    "index": _Func(("any",), "any", _fn_index),
    "slice": _Func(("any",), "any", _fn_slice),
    "call": _Func(("any",), "any", _fn_call),
    "print": _Func((), "any", lambda st, n, a: go_sprint(a)),
    "println": _Func((), "any", lambda st, n, a: go_sprintln(a)),
    "printf": _Func(("string",), "any", lambda st, n, a: go_sprintf(a[0], a[1:])),
    "html": _Func((), "any", _fn_html),
    "js": _Func((), "any", _fn_js),
    "urlquery": _Func((), "any", _fn_urlquery),
    "eq": _Func(("any",), "any", lambda st, n, a: _eq(a[0], *a[1:])),
    "ne": _Func(("any", "any"), None, lambda st, n, a: not _eq(a[0], a[1])),
    "lt": _Func(("any", "any"), None, lambda st, n, a: _lt(a[0], a[1])),
    "le": _Func(("any", "any"), None, lambda st, n, a: _lt(a[0], a[1]) or _eq(a[0], a[1])),
    "gt": _Func(("any", "any"), None,
                lambda st, n, a: not (_lt(a[0], a[1]) or _eq(a[0], a[1]))),
    "ge": _Func(("any", "any"), None, lambda st, n, a: not _lt(a[0], a[1])),
    "json": _Func(("any",), None, _fn_json),
    "currentDate": _Func((), "string", _fn_current_date),
    "yesterdayDate": _Func((), "string", _fn_yesterday_date),
    "toTypeScriptType": _Func(("any",), None, _fn_ts_type),
}


def _holds_any(container: Any) -> bool:
    """Whether the container's elements are Go ``interface{}`` values ([]any, map[string]any).

    Plain lists and dicts (decoded JSON) hold ``any``; tuples, typed lists and lists of
    structs stand for typed slices (``[]*api.Message``, ``[]string``...)."""
    if isinstance(container, _SliceView):
        container = container.base
    return type(container) in (list, dict, ToolCallArguments)


def _map_zero(m: Mapping[Any, Any]) -> Any:
    zero = getattr(m, "go_zero", None)
    return zero() if callable(zero) else None


# ---------------------------------------------------------------------------------------------
# Execution (Go text/template/exec.go)


class _State:
    def __init__(self, template: Template, today: _dt.date, max_output: int,
                 max_steps: int) -> None:
        self.template = template
        self.today = today
        self.max_output = max_output
        self.max_steps = max_steps
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.depth = 0
        self.vars: list[list[Any]] = []  # [name, value, holds an interface{}]
        self.name = ""
        self.node: _Node | None = None
        self.dot_iface = False  # dot is an element of []any / map[string]any
        self.arg_iface = False  # the last field/variable evaluated sat in an interface{}

    # -- errors and bookkeeping
    def errorf(self, msg: str) -> NoReturn:
        name = self.name
        node = self.node
        if node is None:
            raise _ExecError(f"template: {name}: {msg}")
        text = self.template.source
        pos = min(node.pos, len(text))
        before = text[:pos]
        nl = before.rfind("\n")
        line = 1 + before.count("\n")
        col = len(before[nl + 1:].encode("utf-8", "replace")) if nl >= 0 else len(
            before.encode("utf-8", "replace"))
        raise _ExecError(f"template: :{line}:{col}: executing {_quote(name)} at <{node}>: {msg}")

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            self.errorf(f"exceeded maximum execution steps ({self.max_steps})")

    def write(self, s: str) -> None:
        self.size += len(s)
        if self.size > self.max_output:
            self.errorf(f"output exceeds limit of {self.max_output} bytes")
        self.out.append(s)

    def set_var(self, name: str, value: Any, iface: bool = False) -> None:
        for v in reversed(self.vars):
            if v[0] == name:
                v[1], v[2] = value, iface
                return
        self.errorf(f"undefined variable: {name}")

    def var_entry(self, name: str) -> tuple[Any, bool]:
        for v in reversed(self.vars):
            if v[0] == name:
                return v[1], v[2]
        self.errorf(f"undefined variable: {name}")

    def walk_dot(self, dot: Any, iface: bool, node: _Node) -> None:
        saved, self.dot_iface = self.dot_iface, iface
        try:
            self.walk(dot, node)
        finally:
            self.dot_iface = saved

    # -- walking
    def walk(self, dot: Any, node: _Node) -> None:
        self.step()
        self.node = node
        if isinstance(node, TextNode):
            self.write(node.text)
        elif isinstance(node, ActionNode):
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.node = node
                self.write(_printable(val))
        elif isinstance(node, ListNode):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, (IfNode, WithNode)):
            mark = len(self.vars)
            try:
                val = self.eval_pipeline(dot, node.pipe)
                if isinstance(node, WithNode) and _truth(val):
                    self.walk_dot(val, False, node.list)
                elif _truth(val):
                    self.walk(dot, node.list)
                elif node.else_list is not None:
                    self.walk(dot, node.else_list)
            finally:
                del self.vars[mark:]
        elif isinstance(node, RangeNode):
            self.walk_range(dot, node)
        elif isinstance(node, TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, BreakNode):
            raise _Break()
        elif isinstance(node, ContinueNode):
            raise _Continue()
        else:
            self.errorf(f"unknown node: {node}")

    def walk_range(self, dot: Any, r: RangeNode) -> None:
        mark0 = len(self.vars)
        try:
            val = self.eval_pipeline(dot, r.pipe)
            mark = len(self.vars)
            decl = r.pipe.decl

            elem_iface = _holds_any(val)

            def one(index: Any, elem: Any) -> None:
                self.node = r
                self.step()
                iface = elem_iface and not isinstance(elem, GoStruct)
                if decl:
                    if r.pipe.is_assign:
                        if len(decl) > 1:
                            self.set_var(decl[0].ident[0], index)
                        else:
                            self.set_var(decl[0].ident[0], elem, iface)
                    else:
                        self.vars[-1][1:] = [elem, iface]
                if len(decl) > 1:
                    if r.pipe.is_assign:
                        self.set_var(decl[1].ident[0], elem, iface)
                    else:
                        self.vars[-2][1:] = [index, False]
                try:
                    self.walk_dot(elem, iface, r.list)
                except _Continue:
                    pass
                finally:
                    del self.vars[mark:]

            try:
                if isinstance(val, _SEQ):
                    if val:
                        for i, e in enumerate(val):
                            one(i, e)
                        return
                elif isinstance(val, dict):
                    if val:
                        for k in _sorted_keys(val):
                            one(k, val[k])
                        return
                elif isinstance(val, int) and not isinstance(val, bool):
                    if len(decl) > 1:
                        self.errorf(f"can't use {val} to iterate over more than one variable")
                    if val > 0:
                        for i in range(val):
                            one(i, i)
                        return
                elif val is not None:
                    self.errorf(f"range can't iterate over {go_sprint([val])}")
            except _Break:
                return
            if r.else_list is not None:
                self.walk(dot, r.else_list)
        finally:
            del self.vars[mark0:]

    def walk_template(self, dot: Any, t: TemplateNode) -> None:
        tree = self.template.trees.get(t.name)
        if tree is None:
            self.errorf(f"template {_quote(t.name)} not defined")
        if self.depth >= MAX_DEPTH:
            self.errorf(f"exceeded maximum template depth ({MAX_DEPTH})")
        dot = self.eval_pipeline(dot, t.pipe)  # variables it declares persist
        saved = (self.vars, self.name)
        self.vars, self.name = [["$", dot, False]], t.name
        self.depth += 1
        try:
            self.walk_dot(dot, False, tree)
        finally:
            self.vars, self.name = saved
            self.depth -= 1

    # -- evaluation
    def eval_pipeline(self, dot: Any, pipe: PipeNode | None) -> Any:
        if pipe is None:
            return None
        self.node = pipe
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for v in pipe.decl:
            if pipe.is_assign:
                self.set_var(v.ident[0], value)
            else:
                self.vars.append([v.ident[0], value, False])
        return value

    def not_a_function(self, args: Sequence[_Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
        self.step()
        first = cmd.args[0]
        if isinstance(first, FieldNode):
            self.node = first
            return self.eval_field_chain(dot, dot, self.dot_iface, first, first.ident, cmd.args,
                                         final)
        if isinstance(first, ChainNode):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, VariableNode):
            return self.eval_variable(dot, first, cmd.args, final)
        self.node = first
        self.not_a_function(cmd.args, final)
        if isinstance(first, BoolNode):
            return first.value
        if isinstance(first, DotNode):
            return dot
        if isinstance(first, NilNode):
            self.errorf("nil is not a command")
        if isinstance(first, NumberNode):
            return self.ideal_constant(first)
        if isinstance(first, StringNode):
            return first.text
        self.errorf(f"can't evaluate command {_quote(str(first))}")

    def ideal_constant(self, n: NumberNode) -> Any:
        self.node = n
        t = n.text
        is_hex_int = len(t) > 2 and t[0] == "0" and t[1] in "xX" and not any(c in t for c in "pP")
        if (n.is_float and not is_hex_int and not t.startswith("'")
                and any(c in t for c in ".eEpP")):
            return n.float_val
        if n.is_int:
            return n.int_val
        if n.is_uint:
            self.errorf(f"{t} overflows int")
        return None

    def eval_chain(self, dot: Any, chain: ChainNode, args: Sequence[_Node], final: Any) -> Any:
        self.node = chain
        if isinstance(chain.node, NilNode):
            self.errorf(f"indirection through explicit nil in {chain}")
        receiver = self.eval_arg(dot, "any", chain.node)
        return self.eval_field_chain(dot, receiver, False, chain, chain.fields, args, final)

    def eval_variable(self, dot: Any, var: VariableNode, args: Sequence[_Node] | None,
                      final: Any) -> Any:
        self.node = var
        value, iface = self.var_entry(var.ident[0])
        if len(var.ident) == 1:
            self.not_a_function(args or (var,), final)
            self.arg_iface = iface
            return value
        return self.eval_field_chain(dot, value, iface, var, var.ident[1:], args, final)

    def eval_field_chain(self, dot: Any, receiver: Any, iface: bool, node: _Node,
                         ident: Sequence[str], args: Sequence[_Node] | None, final: Any) -> Any:
        for name in ident[:-1]:
            receiver, iface = self.eval_field(name, node, None, _MISSING, receiver, iface)
        value, self.arg_iface = self.eval_field(ident[-1], node, args, final, receiver, iface)
        return value

    def eval_field(self, name: str, node: _Node, args: Sequence[_Node] | None, final: Any,
                   receiver: Any, iface: bool) -> tuple[Any, bool]:
        """``receiver.name`` and whether the result sits in an ``interface{}`` slot."""
        if receiver is None:
            if iface:  # a nil interface{} (a JSON null, a missing map key) has no fields
                self.errorf(f"nil pointer evaluating interface {{}}.{name}")
            return None, False  # no value at all: missingkey=zero gives nothing
        has_args = (args is not None and len(args) > 1) or final is not _MISSING
        if isinstance(receiver, GoStruct):
            found, value = receiver.go_field(name)
            if found:
                if has_args:
                    self.errorf(f"{name} has arguments but cannot be invoked as function")
                return value, name in receiver.go_any_fields
        elif isinstance(receiver, dict):
            if has_args:
                self.errorf(f"{name} is not a method but has arguments")
            any_values = _holds_any(receiver)
            if name in receiver:
                value = receiver[name]
                return value, any_values and not isinstance(value, GoStruct)
            return _map_zero(receiver), any_values
        typ = "interface {}" if iface else _type_name(receiver)
        self.errorf(f"can't evaluate field {name} in type {typ}")

    def eval_function(self, dot: Any, node: IdentifierNode, cmd: _Node,
                      args: Sequence[_Node] | None, final: Any) -> Any:
        self.node = node
        fn = _FUNCS.get(node.name)
        if fn is None:
            self.errorf(f"{_quote(node.name)} is not a defined function")
        return self.eval_call(dot, fn, cmd, node.name, args, final)

    def eval_call(self, dot: Any, fn: _Func, node: _Node, name: str,
                  args: Sequence[_Node] | None, final: Any) -> Any:
        rest = list(args[1:]) if args is not None else []
        num_in = len(rest) + (0 if final is _MISSING else 1)
        nfixed = len(fn.fixed)
        if fn.variadic is not None:
            if num_in < nfixed:
                self.errorf(f"wrong number of args for {name}: want at least {nfixed} "
                            f"got {len(rest)}")
        elif num_in != nfixed:
            self.errorf(f"wrong number of args for {name}: want {nfixed} got {num_in}")
        if name in ("and", "or"):
            v: Any = None
            for a in rest:
                v = self.eval_arg(dot, "any", a)
                if _truth(v) == (name == "or"):
                    return v
            if final is not _MISSING:
                v = final
            return v
        argv: list[Any] = []
        keep_iface = fn.impl is _fn_len or fn.impl is _fn_slice
        for i, a in enumerate(rest):
            kind = fn.fixed[i] if i < nfixed else fn.variadic
            assert kind is not None
            self.arg_iface = False
            v = self.eval_arg(dot, kind, a)
            argv.append(_IfaceArg(v) if keep_iface and self.arg_iface else v)
        if final is not _MISSING:
            kind2 = fn.fixed[num_in - 1] if num_in - 1 < nfixed else fn.variadic
            assert kind2 is not None
            argv.append(self.validate(final, kind2))
        if name == "call":
            callee = str(rest[0]) if rest else go_sprint([final])
            argv.insert(0, callee)
        # Work on long strings costs steps too, so loops over big values stay bounded.
        self.steps += sum(len(a) for a in argv if isinstance(a, str)) >> 12
        if name == "call":
            argv = [_plain(a) for a in argv]
        try:
            result = fn.impl(self, name, argv)
        except _FuncError as e:
            self.node = node
            self.errorf(f"error calling {name}: {e}")
        if isinstance(result, str):
            if len(result) > self.max_output:
                self.node = node
                self.errorf(f"error calling {name}: result exceeds {self.max_output} bytes")
            self.steps += len(result) >> 12
        return result

    def validate(self, value: Any, kind: str) -> Any:
        if kind == "string":
            if value is None:
                self.errorf("invalid value; expected string")
            if not isinstance(value, str):
                self.errorf(f"wrong type for value; expected string; got {_type_name(value)}")
        return value

    def eval_arg(self, dot: Any, kind: str, n: _Node) -> Any:
        value = self.eval_arg_(dot, kind, n)
        if not isinstance(n, (FieldNode, VariableNode)):
            self.arg_iface = isinstance(n, DotNode) and self.dot_iface
        return value

    def eval_arg_(self, dot: Any, kind: str, n: _Node) -> Any:
        self.node = n
        if isinstance(n, DotNode):
            return self.validate(dot, kind)
        if isinstance(n, NilNode):
            if kind == "any":
                return None
            self.errorf(f"cannot assign nil to {kind}")
        if isinstance(n, FieldNode):
            return self.validate(self.eval_field_chain(dot, dot, self.dot_iface, n, n.ident, (n,),
                                                       _MISSING), kind)
        if isinstance(n, VariableNode):
            return self.validate(self.eval_variable(dot, n, None, _MISSING), kind)
        if isinstance(n, PipeNode):
            return self.validate(self.eval_pipeline(dot, n), kind)
        if isinstance(n, IdentifierNode):
            return self.validate(self.eval_function(dot, n, n, None, _MISSING), kind)
        if isinstance(n, ChainNode):
            return self.validate(self.eval_chain(dot, n, (n,), _MISSING), kind)
        if kind == "string":
            if isinstance(n, StringNode):
                return n.text
            self.errorf(f"expected string; found {n}")
        if isinstance(n, BoolNode):
            return n.value
        if isinstance(n, NumberNode):
            return self.ideal_constant(n)
        if isinstance(n, StringNode):
            return n.text
        self.errorf(f"can't handle {n} for arg of type {kind}")


# ---------------------------------------------------------------------------------------------
# The data Ollama gives templates (reference §5.1). Field names are Go's. Tool calls' arguments
# and the tool list print as JSON (they have a String() method in Ollama); so do a tool, its
# function and its parameters (api.Tool / ToolFunction / ToolFunctionParameters String()).
# JSON numbers are float64 in Go, so numbers inside arguments and schemas become floats.


def _go_any(v: Any) -> Any:
    """A decoded JSON value as Go's ``interface{}`` holds it (numbers are float64)."""
    if v is None or isinstance(v, (bool, str, float)):
        return v
    if isinstance(v, int):
        try:
            return float(v)
        except OverflowError:
            return math.inf if v > 0 else -math.inf
    if isinstance(v, Mapping):
        return {str(k): _go_any(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_go_any(x) for x in v]
    return str(v)


def _as_str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _as_int(v: Any) -> int:
    if isinstance(v, bool):
        return 0
    if isinstance(v, int):
        return v
    if isinstance(v, float) and math.isfinite(v):
        return int(v)
    return 0


def _as_map(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


class ToolCallArguments(dict[str, Any]):
    """``api.ToolCallFunctionArguments``: a map that prints as JSON (``{}`` when nil)."""

    __slots__ = ("nil",)
    go_type: ClassVar[str] = "api.ToolCallFunctionArguments"

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        super().__init__(items or {})
        self.nil = items is None

    def go_string(self) -> str:
        return "{}" if self.nil else go_json(self)

    def go_marshal_json(self) -> str:
        return "null" if self.nil else "{" + ",".join(
            _json_string(k) + ":" + go_json(self[k]) for k in _sorted_keys(self)) + "}"


class PropertyType(list[str]):
    """``api.PropertyType``: a JSON Schema type, a string or a list of strings."""

    __slots__ = ()
    go_type: ClassVar[str] = "api.PropertyType"

    def go_string(self) -> str:
        if not self:
            return ""
        if len(self) == 1:
            return self[0]
        return go_sprint([list(self)])

    def go_marshal_json(self) -> str:
        if len(self) == 1:
            return _json_string(self[0])
        return "[" + ",".join(_json_string(t) for t in self) + "]"


_TS_TYPES: Final[Mapping[str, str]] = {
    "string": "string", "number": "number", "integer": "number", "boolean": "boolean",
    "array": "any[]", "object": "Record<string, any>", "null": "null",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolProperty(GoStruct):
    """``api.ToolProperty``: one property of a tool's parameter schema."""

    go_type: ClassVar[str] = "api.ToolProperty"
    go_any_fields: ClassVar[frozenset[str]] = frozenset({"Items"})
    go_fields: ClassVar[tuple[str, ...]] = (
        "AnyOf", "Type", "Items", "Description", "Enum", "Properties", "Required")
    go_json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("AnyOf", "anyOf", True), ("Type", "type", True), ("Items", "items", True),
        ("Description", "description", True), ("Enum", "enum", True),
        ("Properties", "properties", True), ("Required", "required", True))
    AnyOf: tuple[ToolProperty, ...] = ()
    Type: PropertyType = dataclasses.field(default_factory=PropertyType)
    Items: Any = None
    Description: str = ""
    Enum: list[Any] = dataclasses.field(default_factory=list)
    Properties: ToolProperties | None = None
    Required: tuple[str, ...] = ()

    def to_typescript_type(self) -> str:
        if self.AnyOf:
            return " | ".join(p.to_typescript_type() for p in self.AnyOf)
        if not self.Type:
            return "any"
        return " | ".join(_TS_TYPES.get(t, "any") for t in self.Type)

    @classmethod
    def from_json(cls, v: Any, depth: int = 0) -> ToolProperty:
        m = _as_map(v)
        t = m.get("type")
        types = [t] if isinstance(t, str) else [x for x in t if isinstance(x, str)] if (
            isinstance(t, list)) else []
        props = m.get("properties")
        any_of = m.get("anyOf")
        enum = m.get("enum")
        req = m.get("required")
        return cls(
            AnyOf=tuple(cls.from_json(x, depth + 1) for x in any_of)
            if isinstance(any_of, list) and depth < 32 else (),
            Type=PropertyType(types),
            Items=_go_any(m.get("items")),
            Description=_as_str(m.get("description")),
            Enum=[_go_any(x) for x in enum] if isinstance(enum, list) else [],
            Properties=ToolProperties.from_json(props, ordered=True, depth=depth + 1)
            if isinstance(props, Mapping) and depth < 32 else None,
            Required=tuple(x for x in req if isinstance(x, str)) if isinstance(req, list) else (),
        )


class ToolProperties(dict[str, ToolProperty]):
    """Properties of a schema. A missing key reads as an empty ``ToolProperty`` (Go's zero
    value); the top level prints as sorted JSON (a Go map), nested ones keep their order."""

    __slots__ = ("nil", "go_ordered")
    go_type: ClassVar[str] = "map[string]api.ToolProperty"

    def __init__(self, items: Mapping[str, ToolProperty] | None = None, *,
                 ordered: bool = False) -> None:
        super().__init__(items or {})
        self.nil = items is None
        self.go_ordered = ordered

    @staticmethod
    def go_zero() -> ToolProperty:
        return ToolProperty()

    @classmethod
    def from_json(cls, v: Any, *, ordered: bool = False, depth: int = 0) -> ToolProperties:
        if not isinstance(v, Mapping):
            return cls(None, ordered=ordered)
        return cls({str(k): ToolProperty.from_json(x, depth) for k, x in v.items()},
                   ordered=ordered)

    def go_string(self) -> str:
        return "{}" if self.nil else self.go_marshal_json()

    def go_marshal_json(self) -> str:
        if self.nil:
            return "null"
        keys = list(self) if self.go_ordered else _sorted_keys(self)
        return "{" + ",".join(_json_string(k) + ":" + go_json(self[k]) for k in keys) + "}"


class _JSONStringer(GoStruct):
    __slots__ = ()

    def go_string(self) -> str | None:
        return go_json(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolFunctionParameters(_JSONStringer):
    go_type: ClassVar[str] = "api.ToolFunctionParameters"
    go_any_fields: ClassVar[frozenset[str]] = frozenset({"Defs", "Items"})
    go_fields: ClassVar[tuple[str, ...]] = ("Type", "Defs", "Items", "Required", "Properties")
    go_json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("Type", "type", False), ("Defs", "$defs", True), ("Items", "items", True),
        ("Required", "required", True), ("Properties", "properties", False))
    Type: str = ""
    Defs: Any = None
    Items: Any = None
    Required: tuple[str, ...] = ()
    Properties: ToolProperties = dataclasses.field(default_factory=ToolProperties)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolFunction(_JSONStringer):
    go_type: ClassVar[str] = "api.ToolFunction"
    go_fields: ClassVar[tuple[str, ...]] = ("Name", "Description", "Parameters")
    go_json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("Name", "name", False), ("Description", "description", False),
        ("Parameters", "parameters", False))
    Name: str = ""
    Description: str = ""
    Parameters: ToolFunctionParameters = dataclasses.field(
        default_factory=ToolFunctionParameters)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool(_JSONStringer):
    go_type: ClassVar[str] = "api.Tool"
    go_any_fields: ClassVar[frozenset[str]] = frozenset({"Items"})
    go_fields: ClassVar[tuple[str, ...]] = ("Type", "Items", "Function")
    go_json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("Type", "type", False), ("Items", "items", True), ("Function", "function", False))
    Type: str = ""
    Items: Any = None
    Function: ToolFunction = dataclasses.field(default_factory=ToolFunction)

    @classmethod
    def from_json(cls, v: Any) -> Tool:
        m = _as_map(v)
        fn = _as_map(m.get("function"))
        params = _as_map(fn.get("parameters"))
        req = params.get("required")
        return cls(
            Type=_as_str(m.get("type")),
            Items=_go_any(m.get("items")),
            Function=ToolFunction(
                Name=_as_str(fn.get("name")),
                Description=_as_str(fn.get("description")),
                Parameters=ToolFunctionParameters(
                    Type=_as_str(params.get("type")),
                    Defs=_go_any(params.get("$defs")),
                    Items=_go_any(params.get("items")),
                    Required=tuple(x for x in req if isinstance(x, str))
                    if isinstance(req, list) else (),
                    Properties=ToolProperties.from_json(params.get("properties")),
                ),
            ),
        )


class Tools(list[Tool]):
    """``.Tools``: prints as the JSON array of the request's tools (``null`` when none)."""

    __slots__ = ()
    go_type: ClassVar[str] = "api.Tools"

    def go_string(self) -> str:
        return self.go_marshal_json()

    def go_marshal_json(self) -> str:
        if not self:
            return "null"
        return "[" + ",".join(go_json(t) for t in self) + "]"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallFunction(GoStruct):
    go_type: ClassVar[str] = "api.ToolCallFunction"
    go_fields: ClassVar[tuple[str, ...]] = ("Index", "Name", "Arguments")
    go_json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("Index", "index", False), ("Name", "name", False), ("Arguments", "arguments", False))
    Index: int = 0
    Name: str = ""
    Arguments: ToolCallArguments = dataclasses.field(default_factory=ToolCallArguments)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall(GoStruct):
    go_type: ClassVar[str] = "api.ToolCall"
    go_fields: ClassVar[tuple[str, ...]] = ("ID", "Function")
    go_json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("ID", "id", True), ("Function", "function", False))
    ID: str = ""
    Function: ToolCallFunction = dataclasses.field(default_factory=ToolCallFunction)

    @classmethod
    def from_json(cls, v: Any) -> ToolCall:
        m = _as_map(v)
        fn = _as_map(m.get("function"))
        args = fn.get("arguments")
        return cls(ID=_as_str(m.get("id")), Function=ToolCallFunction(
            Index=_as_int(fn.get("index")), Name=_as_str(fn.get("name")),
            Arguments=ToolCallArguments(_go_any(args) if isinstance(args, Mapping) else None)))


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateMessage(GoStruct):
    """One entry of ``.Messages`` (Go ``*api.Message``)."""

    go_type: ClassVar[str] = "*api.Message"
    go_pointer: ClassVar[bool] = True
    go_fields: ClassVar[tuple[str, ...]] = (
        "Role", "Content", "Thinking", "Images", "ToolCalls", "ToolName", "ToolCallID")
    go_json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("Role", "role", False), ("Content", "content", False), ("Thinking", "thinking", True),
        ("Images", "images", True), ("ToolCalls", "tool_calls", True),
        ("ToolName", "tool_name", True), ("ToolCallID", "tool_call_id", True))
    Role: str = ""
    Content: str = ""
    Thinking: str = ""
    Images: tuple[str, ...] = ()
    ToolCalls: tuple[ToolCall, ...] = ()
    ToolName: str = ""
    ToolCallID: str = ""


def template_messages(messages: Sequence[Message]) -> tuple[TemplateMessage, ...]:
    """``.Messages`` (a typed Go slice: a tuple, nil when empty)."""
    return tuple(TemplateMessage(Role=m.role, Content=m.content, Thinking=m.thinking,
                                 Images=tuple(m.images),
                                 ToolCalls=tuple(ToolCall.from_json(c) for c in m.tool_calls),
                                 ToolName=m.tool_name, ToolCallID=m.tool_call_id)
                 for m in messages)


def template_tools(tools: Sequence[Mapping[str, Any]]) -> Tools:
    return Tools(Tool.from_json(t) for t in tools)


# ---------------------------------------------------------------------------------------------
# Templates: Go parse + Ollama's touch-ups


def _identifiers(n: _Node | None) -> list[str]:
    """Ollama template.Identifiers: every field and variable name the tree mentions."""
    if n is None:
        return []
    if isinstance(n, ListNode):
        return [i for c in n.nodes for i in _identifiers(c)]
    if isinstance(n, (ActionNode, TemplateNode)):
        return _identifiers(n.pipe)
    if isinstance(n, _BranchNode):
        return _identifiers(n.pipe) + _identifiers(n.list) + _identifiers(n.else_list)
    if isinstance(n, PipeNode):
        return [i for c in n.cmds for a in c.args for i in _identifiers(a)]
    if isinstance(n, (FieldNode, VariableNode)):
        return list(n.ident)
    return []


def _cut_after_response(root: ListNode) -> ListNode:
    """Ollama's deleteNode: drop everything after the first ``.Response`` field (legacy mode).

    Walk order and quirks follow Ollama: control pipelines are not searched, and a pipeline
    stage left without arguments drops its whole action. Where Ollama would crash (an
    ``{{else}}`` after the cut) the else branch is dropped.
    """
    cut = False

    def walk(n: _Node) -> _Node | None:
        nonlocal cut
        if isinstance(n, FieldNode) and "Response" in n.ident:
            cut = True
            return n
        if cut:
            return None
        if isinstance(n, ListNode):
            kept = [w for c in n.nodes if (w := walk(c)) is not None]
            return dataclasses.replace(n, nodes=tuple(kept))
        if isinstance(n, _BranchNode):
            lst = walk(n.list)
            assert isinstance(lst, ListNode)
            els = walk(n.else_list) if n.else_list is not None else None
            assert els is None or isinstance(els, ListNode)
            return dataclasses.replace(n, list=lst, else_list=els)
        if isinstance(n, ActionNode):
            p = walk(n.pipe)
            return dataclasses.replace(n, pipe=p) if isinstance(p, PipeNode) else None
        if isinstance(n, PipeNode):
            cmds = []
            for c in n.cmds:
                args = [w for a in c.args if (w := walk(a)) is not None]
                if not args:
                    return None
                cmds.append(dataclasses.replace(c, args=tuple(args)))
            return dataclasses.replace(n, cmds=tuple(cmds)) if cmds else None
        return n

    out = walk(root)
    assert isinstance(out, ListNode)
    return out


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Template:
    """A parsed Modelfile TEMPLATE. Build with ``parse``."""

    source: str
    trees: Mapping[str, ListNode]  # "" is the main template, the rest come from define/block
    vars: tuple[str, ...]  # Ollama's Template.Vars(): lower-cased identifiers, sorted
    legacy_root: ListNode  # main template cut after .Response (legacy mode's last turn)

    def __repr__(self) -> str:
        return f"parse({self.source!r})"

    @property
    def root(self) -> ListNode:
        return self.trees[""]

    def uses(self, name: str) -> bool:
        """Whether the template mentions ``.Name`` anywhere (Ollama's ``Vars`` check)."""
        return name.lower() in self.vars

    def execute(self, data: Mapping[str, Any], *, today: str = "2025-01-01",
                max_output: int = MAX_OUTPUT, max_steps: int = MAX_STEPS) -> str:
        """Run the template on ``data`` (a Go ``map[string]any``); ``today`` is YYYY-MM-DD."""
        return self._run(self.root, data, today, max_output, max_steps)

    def _run(self, root: ListNode, data: Mapping[str, Any], today: str, max_output: int,
             max_steps: int) -> str:
        day = _dt.date.fromisoformat(today)
        st = _State(self, day, max_output, max_steps)
        value = dict(data)
        st.vars = [["$", value, False]]
        try:
            st.walk(value, root)
        except _ExecError as e:
            raise TemplateError(str(e)) from None
        except RecursionError:
            raise TemplateError(
                f"template: : exceeded maximum template depth ({MAX_DEPTH})") from None
        return "".join(st.out)


def _parse_trees(text: str) -> dict[str, ListNode]:
    try:
        return _Parser(text).parse()
    except _ParseError as e:
        raise TemplateError(str(e)) from None
    except RecursionError:
        raise TemplateError("template: :1: max expression depth exceeded") from None


@functools.lru_cache(maxsize=32)
def parse_go(text: str) -> Template:
    """Parse with plain Go ``text/template`` semantics (``missingkey=zero``, Ollama's functions
    available) and none of Ollama's touch-ups. ``render_*`` expect ``parse`` instead."""
    trees = _parse_trees(text)
    names = {i.lower() for t in trees.values() for i in _identifiers(t)}
    return Template(source=text, trees=types.MappingProxyType(trees), vars=tuple(sorted(names)),
                    legacy_root=_cut_after_response(trees[""]))


@functools.lru_cache(maxsize=128)
def parse(text: str) -> Template:
    """Parse a Go template as Ollama's ``template.Parse`` does.

    Raises ``TemplateError`` with Go's message (``template: :1: function "foo" not defined``).
    Appends ``{{ .Response }}`` when the template mentions neither ``.Messages`` nor
    ``.Response``.
    """
    trees = _parse_trees(text)
    for tree in trees.values():
        if _has_bare_template_call(tree):
            # Ollama's Identifiers() rejects {{template "x"}} without a pipeline.
            raise TemplateError("undefined template specified")
    names = {i.lower() for t in trees.values() for i in _identifiers(t)}
    if "messages" not in names and "response" not in names:
        root = trees[""]
        response = ActionNode(pos=len(text), line=1 + text.count("\n"), pipe=PipeNode(
            pos=len(text), line=1 + text.count("\n"), is_assign=False, decl=(),
            cmds=(CommandNode(pos=len(text), args=(FieldNode(pos=len(text),
                                                             ident=("Response",)),)),)))
        trees[""] = dataclasses.replace(root, nodes=root.nodes + (response,))
        names.add("response")
    return Template(source=text, trees=types.MappingProxyType(trees), vars=tuple(sorted(names)),
                    legacy_root=_cut_after_response(trees[""]))


def _has_bare_template_call(n: _Node | None) -> bool:
    if isinstance(n, TemplateNode):
        return n.pipe is None
    if isinstance(n, ListNode):
        return any(_has_bare_template_call(c) for c in n.nodes)
    if isinstance(n, _BranchNode):
        return _has_bare_template_call(n.list) or _has_bare_template_call(n.else_list)
    return False


def uses(template: Template, name: str) -> bool:
    """Whether ``template`` mentions ``.Name`` (``Messages``, ``Tools``, ``Suffix``, ...)."""
    return template.uses(name)


# ---------------------------------------------------------------------------------------------
# Ollama's rendering modes (template.Execute)


def _collate(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    """All system texts joined, and consecutive same-role messages merged (not tool ones)."""
    system: list[str] = []
    out: list[Message] = []
    for m in messages:
        if m.role == "system":
            system.append(m.content)
        if out and out[-1].role == m.role and m.role != "tool":
            out[-1] = dataclasses.replace(out[-1], content=out[-1].content + "\n\n" + m.content)
        else:
            out.append(m)
    return "\n\n".join(system), out


def render_chat(template: Template, messages: Sequence[Message], *,
                tools: Sequence[Mapping[str, Any]] = (), think: bool | None = None,
                think_level: str = "", is_think_set: bool = False,
                today: str = "2025-01-01", max_output: int = MAX_OUTPUT,
                max_steps: int = MAX_STEPS) -> str:
    """The prompt for ``messages`` (reference §5.1 modes 2 and 3)."""
    system, msgs = _collate(messages)
    thinking = {"Think": bool(think), "ThinkLevel": think_level, "IsThinkSet": is_think_set}
    if template.uses("Messages"):
        return template.execute({
            "System": system, "Messages": template_messages(msgs),
            "Tools": template_tools(tools), "Response": "", **thinking,
        }, today=today, max_output=max_output, max_steps=max_steps)

    # Legacy: one execution per (system, user, assistant) turn; the last one stops right
    # after .Response so the model continues the assistant's text.
    pieces: list[str] = []
    total = 0
    turn = {"System": "", "Prompt": "", "Response": ""}

    def run(root: ListNode) -> None:
        nonlocal total
        out = template._run(root, {**turn, **thinking}, today, max_output - total, max_steps)
        total += len(out)
        pieces.append(out)
        turn.update(System="", Prompt="", Response="")

    for m in msgs:
        if m.role == "system":
            if turn["Prompt"] or turn["Response"]:
                run(template.root)
            turn["System"] = m.content
        elif m.role == "user":
            if turn["Response"]:
                run(template.root)
            turn["Prompt"] = m.content
        elif m.role == "assistant":
            turn["Response"] = m.content
    run(template.legacy_root)
    return "".join(pieces)


def render_suffix(template: Template, prompt: str, suffix: str, *, think: bool | None = None,
                  think_level: str = "", is_think_set: bool = False,
                  today: str = "2025-01-01", max_output: int = MAX_OUTPUT,
                  max_steps: int = MAX_STEPS) -> str:
    """Fill-in-middle prompt: one execution with ``.Prompt``, ``.Suffix``, empty ``.Response``
    (reference §5.1 mode 1; Ollama passes nothing else, so ``.System`` prints ``<no value>``)."""
    return template.execute({
        "Prompt": prompt, "Suffix": suffix, "Response": "", "Think": bool(think),
        "ThinkLevel": think_level, "IsThinkSet": is_think_set,
    }, today=today, max_output=max_output, max_steps=max_steps)
