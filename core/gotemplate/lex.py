"""The lexer of Go templates (Go ``text/template/parse/lex.go``).

``Lexer(text).run()`` turns template text into ``Token``s as Go's state-function lexer does:
``{{-``/``-}}`` trim the surrounding spaces, comments vanish, and lexing stops at the first
error, which becomes an ``ERROR`` token carrying Go's message, followed by ``EOF``.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from .strconv import quote

__all__ = ["TokenType", "Token", "Lexer"]


class TokenType(enum.IntEnum):
    """Go's ``itemType``, in Go's order: the keywords sort after ``KEYWORD``."""

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


_KEYWORDS: Final[Mapping[str, TokenType]] = {
    ".": TokenType.DOT, "block": TokenType.BLOCK, "break": TokenType.BREAK,
    "continue": TokenType.CONTINUE, "define": TokenType.DEFINE, "else": TokenType.ELSE,
    "end": TokenType.END, "if": TokenType.IF, "range": TokenType.RANGE, "nil": TokenType.NIL,
    "template": TokenType.TEMPLATE, "with": TokenType.WITH,
}

_SPACE: Final = " \t\r\n"
_EOF: Final = ""

# A lexer state (Go's stateFn): it consumes input and returns the next state, None at the end.
_StateFn: TypeAlias = Callable[[], "_StateFn | None"]


@dataclass(frozen=True, slots=True)
class Token:
    """Go's ``item``: a token, its text, its offset and its line."""

    typ: TokenType
    val: str
    pos: int
    line: int

    def __str__(self) -> str:  # Go's item.String()
        if self.typ == TokenType.EOF:
            return "EOF"
        if self.typ == TokenType.ERROR:
            return self.val
        if self.typ > TokenType.KEYWORD:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return quote(self.val[:10]) + "..."
        return quote(self.val)


def _is_alnum(r: str) -> bool:
    return r != _EOF and (r == "_" or r.isalpha() or r.isdecimal())


class Lexer:
    """Turns template text into tokens; stops after the first error (as Go's lexer does)."""

    def __init__(self, text: str) -> None:
        self.input = text
        self.pos = 0
        self.start = 0
        self.width = 0
        self.paren_depth = 0
        self.items: list[Token] = []
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]

    def line(self, pos: int) -> int:
        return 1 + bisect.bisect_left(self.newlines, pos)

    def run(self) -> list[Token]:
        state: _StateFn | None = self.lex_text
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

    def emit(self, typ: TokenType) -> None:
        self.items.append(Token(typ, self.input[self.start:self.pos], self.start,
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

    def errorf(self, msg: str) -> _StateFn | None:
        self.items.append(Token(TokenType.ERROR, msg, self.start, self.line(self.start)))
        self.items.append(Token(TokenType.EOF, "", len(self.input), self.line(len(self.input))))
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
    def lex_text(self) -> _StateFn | None:
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
                    self.items.append(
                        Token(TokenType.TEXT, text, self.start, self.line(self.start)))
                self.start = self.pos
            return self.lex_left_delim
        self.pos = len(self.input)
        if self.pos > self.start:
            self.emit(TokenType.TEXT)
        self.emit(TokenType.EOF)
        return None

    def lex_left_delim(self) -> _StateFn | None:
        self.pos += 2
        after = 2 if self.has_left_trim(self.pos) else 0
        if self.input.startswith("/*", self.pos + after):
            self.pos += after
            self.start = self.pos
            return self.lex_comment
        self.emit(TokenType.LEFT_DELIM)
        self.pos += after
        self.start = self.pos
        self.paren_depth = 0
        return self.lex_inside_action

    def lex_comment(self) -> _StateFn | None:
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

    def lex_right_delim(self) -> _StateFn | None:
        _, trim = self.at_right_delim()
        if trim:
            self.pos += 2
            self.start = self.pos
        self.pos += 2
        self.emit(TokenType.RIGHT_DELIM)
        if trim:
            self.pos += self.left_trim_length(self.pos)
            self.start = self.pos
        return self.lex_text

    def lex_inside_action(self) -> _StateFn | None:
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
            self.emit(TokenType.ASSIGN)
        elif r == ":":
            if self.next() != "=":
                return self.errorf("expected :=")
            self.emit(TokenType.DECLARE)
        elif r == "|":
            self.emit(TokenType.PIPE)
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
            self.emit(TokenType.LEFT_PAREN)
        elif r == ")":
            self.paren_depth -= 1
            if self.paren_depth < 0:
                return self.errorf("unexpected right paren")
            self.emit(TokenType.RIGHT_PAREN)
        elif r <= "\x7f" and r.isprintable():
            self.emit(TokenType.CHAR)
        else:
            return self.errorf(f"unrecognized character in action: {_sharp_u(r)}")
        return self.lex_inside_action

    def lex_space(self) -> _StateFn | None:
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
        self.emit(TokenType.SPACE)
        return self.lex_inside_action

    def lex_identifier(self) -> _StateFn | None:
        while True:
            r = self.next()
            if _is_alnum(r):
                continue
            self.backup()
            word = self.input[self.start:self.pos]
            if not self.at_terminator():
                return self.errorf(f"bad character {_sharp_u(r)}")
            kw = _KEYWORDS.get(word)
            if kw is not None and kw > TokenType.KEYWORD:
                self.emit(kw)
            elif word in ("true", "false"):
                self.emit(TokenType.BOOL)
            else:
                self.emit(TokenType.IDENTIFIER)
            return self.lex_inside_action

    def lex_field(self) -> _StateFn | None:
        return self.lex_field_or_variable(TokenType.FIELD)

    def lex_variable(self) -> _StateFn | None:
        if self.at_terminator():
            self.emit(TokenType.VARIABLE)
            return self.lex_inside_action
        return self.lex_field_or_variable(TokenType.VARIABLE)

    def lex_field_or_variable(self, typ: TokenType) -> _StateFn | None:
        if self.at_terminator():
            self.emit(TokenType.VARIABLE if typ == TokenType.VARIABLE else TokenType.DOT)
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

    def lex_char(self) -> _StateFn | None:
        return self._lex_escaped("'", TokenType.CHAR_CONSTANT, "unterminated character constant")

    def lex_quote(self) -> _StateFn | None:
        return self._lex_escaped('"', TokenType.STRING, "unterminated quoted string")

    def _lex_escaped(self, close: str, typ: TokenType, error: str) -> _StateFn | None:
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

    def lex_raw_quote(self) -> _StateFn | None:
        while True:
            r = self.next()
            if r == _EOF:
                return self.errorf("unterminated raw quoted string")
            if r == "`":
                break
        self.emit(TokenType.RAW_STRING)
        return self.lex_inside_action

    def lex_number(self) -> _StateFn | None:
        if not self.scan_number():
            return self.errorf(f"bad number syntax: {quote(self.input[self.start:self.pos])}")
        if self.peek() in ("+", "-"):
            # Go accepts complex constants such as 1+2i; pollama does not model complex.
            if not self.scan_number() or self.input[self.pos - 1] != "i":
                return self.errorf(
                    f"bad number syntax: {quote(self.input[self.start:self.pos])}")
            self.emit(TokenType.COMPLEX)
            return self.lex_inside_action
        self.emit(TokenType.NUMBER)
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
