"""Modelfiles: parse, serialise back, and map to a create request (Ollama's parser/parser.go).

Mirrors Ollama's ``parser/parser.go`` (``ParseFile``, ``Command.String``, ``quote``/``unquote``,
``CreateRequest``, ``expandPath``). Everything here is pure: the CLI reads the file, decides which
FROM/ADAPTER/DRAFT values are local paths and hashes them; this module only turns text into
commands and commands into a :class:`CreateSpec`.

Theory of operation
-------------------
The parser is Ollama's rune-at-a-time state machine. A command is ``KEYWORD<space|tab>VALUE``.
``NIL`` sits between commands; ``#`` there starts a comment to end of line (a ``#`` anywhere else
is ordinary text). ``NAME`` collects the ASCII letters of the keyword (case-insensitive);
PARAMETER then reads a ``[A-Za-z0-9_]`` name and MESSAGE a lower-case role, each ended by a
space/tab. ``VALUE`` runs to a line break, but a line break only *ends* the value when the value
so far, trimmed, is complete: not starting with ``"`` (bare), ``"..."`` (at least 2 chars) or
``\"\"\"...\"\"\"`` (at least 6 chars). Otherwise the line break is kept and the value goes on, so
quoted values may span lines and keep their inner newlines and spaces verbatim. Characters that
are not printable (Go ``strconv.IsPrint``, the same set as ``str.isprintable``) are dropped,
except spaces, tabs and line breaks inside a value.

Deliberate differences from Ollama, all in the user's favour:
- line numbers in errors are those of the offending command's first line (Ollama reports the
  next line when the bad keyword is followed directly by a newline, and counts CRLF twice);
- ``to_text`` quotes any value that would not read back unchanged (Ollama writes FROM and
  values starting with ``"`` bare, and empty values as nothing at all);
- PARAMETER and MESSAGE keep their own command names (Ollama stores a parameter under its own
  name, so ``PARAMETER template x`` would set the template).
"""

from __future__ import annotations

import enum
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import options
from .errors import BadRequest, ModelfileError

__all__ = [
    "KEYWORDS",
    "ROLES",
    "Command",
    "CreateSpec",
    "Modelfile",
    "ModelfileError",
    "decode_modelfile",
    "is_representable",
    "parse_modelfile",
    "quote_value",
    "resolve_path",
]

# Order as in Ollama's error message.
KEYWORDS: tuple[str, ...] = (
    "from", "license", "template", "system", "adapter", "draft",
    "renderer", "parser", "parameter", "message", "requires",
)
ROLES: tuple[str, ...] = ("system", "user", "assistant")

INVALID_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"'
MISSING_FROM = "no FROM line"
UNEXPECTED_EOF = "unexpected EOF"
INVALID_REQUIRES = "requires must be a valid semver (e.g. 0.14.0)"


# --------------------------------------------------------------------------------------------
# Commands


_PARAM_NAME = re.compile(r"[A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """One Modelfile instruction.

    ``name`` is the lower-case keyword. ``args`` is the unquoted value, except for
    ``parameter`` (``"<name> <value>"``) and ``message`` (``"<role> <content>"``): there the
    first space separates the key from the raw value; use :meth:`split`. ``line`` is where the
    command starts (0 when built by code) and takes no part in equality.
    """

    name: str
    args: str
    line: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.name not in KEYWORDS:
            raise ValueError(f"unknown Modelfile command {self.name!r}")
        if not isinstance(self.args, str):
            raise TypeError("Command.args must be a str")
        if not isinstance(self.line, int) or self.line < 0:
            raise ValueError("Command.line must be an int >= 0")
        if self.name == "parameter":
            key, sep, _ = self.args.partition(" ")
            if not sep or not _PARAM_NAME.fullmatch(key):
                raise ValueError(f"parameter args must be '<name> <value>': {self.args!r}")
        elif self.name == "message":
            role, sep, _ = self.args.partition(" ")
            if not sep or role not in ROLES:
                raise ValueError(f"message args must be '<role> <content>': {self.args!r}")

    @classmethod
    def param(cls, name: str, value: str, *, line: int = 0) -> Command:
        return cls(name="parameter", args=f"{name} {value}", line=line)

    @classmethod
    def msg(cls, role: str, content: str, *, line: int = 0) -> Command:
        return cls(name="message", args=f"{role} {content}", line=line)

    def split(self) -> tuple[str, str]:
        """``(name, raw value)`` of a PARAMETER or ``(role, content)`` of a MESSAGE."""
        if self.name not in ("parameter", "message"):
            raise ValueError(f"{self.name} commands have no key")
        key, _, value = self.args.partition(" ")
        return key, value

    def to_text(self) -> str:
        """One Modelfile line (or several, for a multi-line quoted value); no trailing newline."""
        if self.name in ("parameter", "message"):
            key, value = self.split()
            return f"{self.name.upper()} {key} {quote_value(value)}"
        return f"{self.name.upper()} {quote_value(self.args)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSpec:
    """What a Modelfile asks ``/api/create`` for (Ollama ``Modelfile.CreateRequest``).

    ``from_``, ``adapters`` and ``draft`` are the raw values in file order; which of them are
    local files (uploaded as blobs into ``files``/``adapters``/``draft_files``) and which is a
    model name (``from``) is for the CLI to decide, with :func:`resolve_path`. Ollama keeps only
    the last ADAPTER and the last non-file FROM. ``template``/``system``/``renderer``/``parser``/
    ``requires`` are ``None`` when absent (the last one wins when repeated).
    """

    from_: tuple[str, ...] = ()
    adapters: tuple[str, ...] = ()
    draft: tuple[str, ...] = ()
    template: str | None = None
    system: str | None = None
    license: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: tuple[dict[str, str], ...] = ()
    requires: str | None = None
    renderer: str | None = None
    parser: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Modelfile:
    commands: tuple[Command, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.commands, tuple) or not all(
            isinstance(c, Command) for c in self.commands
        ):
            raise TypeError("Modelfile.commands must be a tuple of Command")

    def to_text(self) -> str:
        """Serialise (Ollama ``Modelfile.String``): one command per line, keywords upper-case.

        ``parse_modelfile(m.to_text()) == m`` whenever every value :func:`is_representable`
        (always true of a parsed Modelfile).
        """
        return "".join(c.to_text() + "\n" for c in self.commands)

    def normalized(self) -> Modelfile:
        """The same commands with line numbers cleared."""
        return Modelfile(commands=tuple(replace(c, line=0) for c in self.commands))

    def to_create_spec(self) -> CreateSpec:
        """Map to a :class:`CreateSpec` as Ollama's ``CreateRequest`` does.

        PARAMETER values are typed with :func:`options.parse_parameter` (``stop`` accumulates
        into a list, others: last wins); deprecated names are skipped with a warning.
        """
        from_: list[str] = []
        adapters: list[str] = []
        drafts: list[str] = []
        licenses: list[str] = []
        messages: list[dict[str, str]] = []
        warnings: list[str] = []
        params: dict[str, Any] = {}
        single: dict[str, str] = {}
        for c in self.commands:
            if c.name == "from":
                from_.append(c.args)
            elif c.name == "adapter":
                adapters.append(c.args)
            elif c.name == "draft":
                drafts.append(c.args)
            elif c.name == "license":
                licenses.append(c.args)
            elif c.name == "requires":
                single["requires"] = _check_requires(c)
            elif c.name in ("template", "system", "renderer", "parser"):
                single[c.name] = c.args
            elif c.name == "message":
                role, content = c.split()
                messages.append({"role": role, "content": content})
            else:  # parameter
                key, raw = c.split()
                if key in options.DEPRECATED:
                    warnings.append(f"parameter {key} is deprecated")
                    continue
                try:
                    value = options.parse_parameter(key, raw)
                except BadRequest as e:
                    raise ModelfileError(e.message, line=c.line or None) from e
                old = params.get(key)
                if isinstance(old, list) and isinstance(value, list):
                    params[key] = old + value
                else:
                    params[key] = value
        return CreateSpec(
            from_=tuple(from_),
            adapters=tuple(adapters),
            draft=tuple(drafts),
            template=single.get("template"),
            system=single.get("system"),
            license=tuple(licenses),
            parameters=params,
            messages=tuple(messages),
            requires=single.get("requires"),
            renderer=single.get("renderer"),
            parser=single.get("parser"),
            warnings=tuple(warnings),
        )


# golang.org/x/mod/semver.IsValid: vMAJOR[.MINOR[.PATCH[-PRE][+BUILD]]], no leading zeros.
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re.compile(
    rf"v{_NUM}(?:\.{_NUM}(?:\.{_NUM}(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?"
)


def _check_requires(c: Command) -> str:
    version = c.args if c.args.startswith("v") else "v" + c.args
    if not _SEMVER.fullmatch(version):
        raise ModelfileError(INVALID_REQUIRES, line=c.line or None)
    return version[1:]


# --------------------------------------------------------------------------------------------
# Decoding


def decode_modelfile(data: bytes) -> str:
    """Bytes to text as Go's ``unicode.BOMOverride(UTF8)``: a BOM picks UTF-8/UTF-16LE/BE,
    otherwise UTF-8; invalid sequences become U+FFFD rather than failing."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", "replace")
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", "replace")
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", "replace")
    return data.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------
# Parsing


class _State(enum.Enum):
    NIL = "nil"              # between commands
    NAME = "name"            # the keyword
    PARAMETER = "parameter"  # PARAMETER's option name
    MESSAGE = "message"      # MESSAGE's role
    VALUE = "value"          # the value, to a line break where it is complete
    COMMENT = "comment"      # '#' to end of line


class _Char(enum.Enum):
    ALPHA = "alpha"
    DIGIT = "digit"
    UNDERSCORE = "underscore"
    SPACE = "space"      # ' ' or '\t'
    NEWLINE = "newline"  # '\r' or '\n'
    HASH = "hash"
    OTHER = "other"


class _Act(enum.Enum):
    SKIP = "skip"              # drop the character
    START = "start"            # first character of a command
    KEEP = "keep"              # append to the token
    END_NAME = "end_name"      # keyword done: check it, pick the next state
    END_KEY = "end_key"        # parameter name / role done
    INVALID = "invalid"        # (line N): command must be one of ...
    EOF = "eof"                # unexpected EOF: <token> (Ollama's wording for a bad key)


_ASCII_CLASS: dict[str, _Char] = {
    **{c: _Char.ALPHA for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    **{c: _Char.DIGIT for c in "0123456789"},
    "_": _Char.UNDERSCORE, " ": _Char.SPACE, "\t": _Char.SPACE,
    "\r": _Char.NEWLINE, "\n": _Char.NEWLINE, "#": _Char.HASH,
}

_S, _C, _A = _State, _Char, _Act
# (state, character class) -> (action, next state); VALUE and COMMENT are scanned a line at a
# time by the loop. Mirrors parseRuneForState.
_TABLE: dict[tuple[_State, _Char], tuple[_Act, _State]] = {
    **{(_S.NIL, k): (_A.START, _S.NAME) for k in _Char},
    (_S.NIL, _C.HASH): (_A.SKIP, _S.COMMENT),
    (_S.NIL, _C.SPACE): (_A.SKIP, _S.NIL),
    (_S.NIL, _C.NEWLINE): (_A.SKIP, _S.NIL),
    **{(_S.NAME, k): (_A.INVALID, _S.NIL) for k in _Char},
    (_S.NAME, _C.ALPHA): (_A.KEEP, _S.NAME),
    (_S.NAME, _C.SPACE): (_A.END_NAME, _S.VALUE),
    **{(_S.PARAMETER, k): (_A.EOF, _S.NIL) for k in _Char},
    (_S.PARAMETER, _C.ALPHA): (_A.KEEP, _S.PARAMETER),
    (_S.PARAMETER, _C.DIGIT): (_A.KEEP, _S.PARAMETER),
    (_S.PARAMETER, _C.UNDERSCORE): (_A.KEEP, _S.PARAMETER),
    (_S.PARAMETER, _C.SPACE): (_A.END_KEY, _S.VALUE),
    **{(_S.MESSAGE, k): (_A.EOF, _S.NIL) for k in _Char},
    (_S.MESSAGE, _C.ALPHA): (_A.KEEP, _S.MESSAGE),
    (_S.MESSAGE, _C.SPACE): (_A.END_KEY, _S.VALUE),
}
del _S, _C, _A

_BREAK = re.compile(r"[\r\n]")


class _Kind(enum.Enum):
    BARE = "bare"
    SINGLE = "single"  # "..."
    TRIPLE = "triple"  # """..."""


class _Value:
    """The VALUE state's buffer, fed a line at a time, answering Ollama's
    ``unquote(strings.TrimSpace(buffer))`` question in O(1) per line break."""

    __slots__ = ("_parts", "_length", "_kind", "_start", "_end", "_tail", "_raw_tail")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._kind = _Kind.BARE
        self._start = -1      # index of the first non-blank character
        self._end = -1        # index after the last non-blank character
        self._tail = ""       # last 3 characters up to _end
        self._raw_tail = ""   # last 3 characters of the whole buffer

    def add_line(self, seg: str) -> None:
        """Append the (already filtered) text of one line, without its line break."""
        if not seg:
            return
        if self._start < 0:
            body = seg.lstrip(" \t")
            if body:
                # The first non-blank text is on one line (a blank first line completes the
                # value), so the line decides the quoting.
                self._start = self._length + len(seg) - len(body)
                if body.startswith('"""'):
                    self._kind = _Kind.TRIPLE
                elif body.startswith('"'):
                    self._kind = _Kind.SINGLE
        kept = seg.rstrip(" \t")
        if kept:
            self._end = self._length + len(kept)
            self._tail = (self._raw_tail + kept)[-3:]
        self._raw_tail = (self._raw_tail + seg)[-3:]
        self._parts.append(seg)
        self._length += len(seg)

    def add_break(self, ch: str) -> None:
        self._parts.append(ch)
        self._length += 1
        self._raw_tail = (self._raw_tail + ch)[-3:]

    def complete(self) -> bool:
        if self._start < 0 or self._kind is _Kind.BARE:
            return True
        size = self._end - self._start
        if self._kind is _Kind.TRIPLE:
            return size >= 6 and self._tail == '"""'
        return size >= 2 and self._tail.endswith('"')

    def text(self) -> str:
        if self._start < 0:
            return ""
        s = "".join(self._parts)[self._start:self._end]
        if self._kind is _Kind.TRIPLE:
            return s[3:-3]
        if self._kind is _Kind.SINGLE:
            return s[1:-1]
        return s


def _printable(seg: str) -> str:
    """Drop what Go's ``strconv.IsPrint`` rejects, keeping tabs (values keep their blanks)."""
    if seg.isprintable():
        return seg
    return "".join(c for c in seg if c == "\t" or c.isprintable())


def _line_step(text: str, i: int) -> int:
    """1 if ``text[i]`` ends a line (CRLF counts once), else 0."""
    ch = text[i]
    if ch == "\n":
        return 1
    if ch == "\r":
        return 0 if text.startswith("\n", i + 1) else 1
    return 0


def parse_modelfile(text: str | bytes) -> Modelfile:
    """Parse a Modelfile (Ollama ``parser.ParseFile``); bytes go through
    :func:`decode_modelfile` first. Raises :class:`ModelfileError`."""
    if isinstance(text, (bytes, bytearray)):
        text = decode_modelfile(bytes(text))
    commands: list[Command] = []
    state = _State.NIL
    token: list[str] = []
    name = key = ""
    cmd_line = 0
    line = 1
    value = _Value()
    i, n = 0, len(text)
    while i < n:
        if state is _State.VALUE or state is _State.COMMENT:
            m = _BREAK.search(text, i)
            j = m.start() if m else n
            if state is _State.VALUE:
                value.add_line(_printable(text[i:j]))
            if j == n:
                break
            if state is _State.COMMENT:
                state = _State.NIL
            elif value.complete():
                commands.append(_command(name, key, value.text(), cmd_line))
                state = _State.NIL
            else:
                value.add_break(text[j])
            line += _line_step(text, j)
            i = j + 1
            continue

        ch = text[i]
        act, nxt = _TABLE[(state, _ASCII_CLASS.get(ch, _Char.OTHER))]
        if act is _Act.START:
            cmd_line = line
            token = [ch] if ch.isprintable() else []
        elif act is _Act.KEEP:
            token.append(ch)
        elif act is _Act.END_NAME:
            name = "".join(token).lower()
            if name not in KEYWORDS:
                raise ModelfileError(f"(line {cmd_line}): {INVALID_COMMAND}", line=cmd_line)
            if name == "parameter":
                nxt = _State.PARAMETER
            elif name == "message":
                nxt = _State.MESSAGE
            token, key = [], ""
        elif act is _Act.END_KEY:
            key = "".join(token)
            if name == "message" and key not in ROLES:
                raise ModelfileError(f"(line {cmd_line}): {INVALID_ROLE}", line=cmd_line)
            token = []
        elif act is _Act.INVALID:
            raise ModelfileError(f"(line {cmd_line}): {INVALID_COMMAND}", line=cmd_line)
        elif act is _Act.EOF:
            raise ModelfileError(f"{UNEXPECTED_EOF}: {''.join(token)}", line=cmd_line)
        if nxt is _State.VALUE:
            value = _Value()
        state = nxt
        line += _line_step(text, i)
        i += 1

    if state is _State.VALUE:
        if not value.complete():
            raise ModelfileError(UNEXPECTED_EOF, line=cmd_line)
        commands.append(_command(name, key, value.text(), cmd_line))
    elif state is not _State.NIL and state is not _State.COMMENT:
        raise ModelfileError(UNEXPECTED_EOF, line=cmd_line)

    if not any(c.name == "from" for c in commands):
        raise ModelfileError(MISSING_FROM)
    return Modelfile(commands=tuple(commands))


def _command(name: str, key: str, value: str, line: int) -> Command:
    if name in ("parameter", "message"):
        return Command(name=name, args=f"{key} {value}", line=line)
    return Command(name=name, args=value, line=line)


# --------------------------------------------------------------------------------------------
# Quoting


def _is_bare(value: str) -> bool:
    return (
        value != ""
        and not value.startswith('"')
        and value == value.strip(" \t")
        and "\n" not in value
        and "\r" not in value
        and _printable(value) == value
    )


def _reads_back(quoted: str, value: str) -> bool:
    """Would ``KEYWORD <quoted>`` parse to exactly ``value``?"""
    scan = _Value()
    start = 0
    for m in _BREAK.finditer(quoted):
        scan.add_line(_printable(quoted[start:m.start()]))
        if scan.complete():
            return False
        scan.add_break(m.group())
        start = m.end()
    scan.add_line(_printable(quoted[start:]))
    return scan.complete() and scan.text() == value


def _candidates(value: str) -> tuple[str, str]:
    single, triple = f'"{value}"', f'"""{value}"""'
    return (triple, single) if '"' in value else (single, triple)


def is_representable(value: str) -> bool:
    """Can ``value`` be written so that parsing gives it back? False only for values with
    non-printable characters, or with ``\"\"\"`` at the end of a line (blanks aside), which
    would close either quoting early."""
    return _is_bare(value) or any(_reads_back(q, value) for q in _candidates(value))


def quote_value(value: str) -> str:
    """Write a value as Ollama's ``quote`` (Ollama's parser/parser.go Modelfile.String): bare when
    safe, else ``\"\"\"…\"\"\"`` if it contains ``"``, else ``"…"``; the other quoting when the
    preferred one would not read back. An unrepresentable value gets Ollama's own (lossy)
    choice."""
    if _is_bare(value):
        return value
    for quoted in _candidates(value):
        if _reads_back(quoted, value):
            return quoted
    if "\n" in value or value.startswith(" ") or value.endswith(" "):
        return f'"""{value}"""' if '"' in value else f'"{value}"'
    return value


# --------------------------------------------------------------------------------------------
# Paths


def resolve_path(
    value: str,
    modelfile_dir: str,
    home: str,
    *,
    user_homes: Mapping[str, str] | None = None,
) -> str:
    """Resolve a FROM/ADAPTER/DRAFT value as Ollama's ``expandPath`` (POSIX strings only).

    Absolute paths are cleaned; ``~`` and ``~/x`` go under ``home``; ``~user[/x]`` under
    ``user_homes[user]``; anything else is relative to ``modelfile_dir`` (pass it absolute to get
    an absolute result: making it absolute needs the working directory, which is I/O).
    """
    if value.startswith("/"):
        return _clean(value)
    if value.startswith("~"):
        if value == "~" or value.startswith("~/"):
            return _join(home, value[1:])
        user, sep, rest = value[1:].partition("/")
        homes = user_homes or {}
        if user not in homes:
            raise ModelfileError(f"failed to find user '{user}': user: unknown user {user}")
        return _join(homes[user], "/" + rest if sep else "")
    return _join(modelfile_dir, value)


def _join(*parts: str) -> str:
    # Go's filepath.Join: skip empty parts, join with '/', Clean.
    return _clean("/".join(p for p in parts if p))


def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path)
    # POSIX keeps a leading '//' that Go's Clean collapses.
    return cleaned[1:] if cleaned.startswith("//") else cleaned
