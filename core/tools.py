"""Tool calls: finding a model's tool-call format, parsing calls out of streamed output, and a
grammar that keeps small models' calls valid (Ollama's server/routes.go ChatHandler;
template/template.go).

Theory of operation.

*Format.* A model shows how it writes tool calls in its chat template, in the branch that
renders an assistant message's ``.ToolCalls`` / ``message.tool_calls``. Ollama finds the literal
text the template emits before the call JSON (``<tool_call>``, ``[TOOL_CALLS]``); with none,
JSON at the start of the output is tried. We render the template twice with the same
conversation, once with a sentinel assistant text and once with a sentinel tool call
(name ``@@name@@``, arguments ``{"@@argument@@": 1}``, as Ollama's ``tools`` package does),
strip what both renders share at either end, and look in what is left for the outermost JSON
value holding the sentinel name: the text before it is the ``prefix``, after it the ``suffix``
(both whitespace-trimmed), the keys holding the name and arguments are remembered (command-r
writes ``tool_name``/``parameters``) and so is whether calls sit in a JSON array. A template
that renders no tool calls, renders them in a non-JSON form, or fails, gives ``ToolFormat()``:
JSON at the start of the output.

*Parsing.* ``ToolCallParser`` is a push parser over the text the model streams::

    LEAD    --ws--> LEAD (held)    --prefix--> OPEN    --"{"/"["--> JSON
    LEAD    --other text--> SCAN, or PLAIN when there is no prefix (nothing more to find)
    SCAN    --prefix--> OPEN       (text before it is content; a partial prefix is held)
    OPEN    --ws--> OPEN (held)    --"{"/"["--> JSON   --other--> SCAN, the prefix is content
    JSON    --value closes, all of it calls--> BETWEEN --not calls, malformed--> SCAN/PLAIN
    BETWEEN --ws--> (held)  --suffix--> LEAD   --anything else--> LEAD (block had no suffix)

LEAD is the start of the output and the point after a call block: JSON there is tried even
when the template shows a prefix (small models often forget it). A JSON value is scanned
incrementally (brackets and strings only) and decoded once it closes; it counts as calls when
it is an object, or a non-empty array of objects, each of a known shape naming one of the
request's tools (``{"name", "arguments"|"parameters"}``, the template's own keys,
``{"function": {...}}``, arguments as an object or a JSON string). Giving up hands the held
prefix/whitespace back as content and rescans the value's text (so a later prefix is still
found). Whitespace before a prefix, between calls and after a block is dropped once a call is
found; text after the calls is content.

Invariants (tested with Hypothesis): the result does not depend on how the text is split into
``feed`` calls; when no call is found, the concatenated content is exactly the input; nothing
raises. ``finish()`` returns what is still held as content: a partial prefix, or a prefix
followed by JSON that never closed (malformed calls are never lost, never half-parsed).

*Grammar.* ``tool_call_grammar`` builds llama.cpp GBNF: free text that never contains the prefix
(or, with no prefix, text not starting with JSON), optionally followed by call blocks
``prefix call suffix`` whose JSON is constrained by a JSON schema (``anyOf`` over the tools:
``{name: <const>, arguments: <the tool's parameters>}``). The JSON-schema-to-GBNF conversion is
llama.cpp's; core cannot import it, so the caller passes it in (see ``tool_call_grammar``).
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from . import chat_template, gotemplate
from .errors import BadRequest
from .requests import Message

__all__ = [
    "ToolFormat", "ToolCall", "ToolCallParser", "detect_go", "detect_jinja", "detect",
    "to_wire", "tool_names", "tool_call_schema", "tool_call_grammar",
]

_WS: Final = " \t\n\r"  # JSON whitespace; also what is trimmed around prefixes and calls
MAX_CALL_CHARS: Final = 1 << 20  # a call longer than this is given up on (returned as content)
MAX_JSON_DEPTH: Final = 64


@dataclass(frozen=True, slots=True)
class ToolFormat:
    """How a model writes tool calls: ``prefix`` JSON ``suffix``.

    ``prefix == ""`` means JSON at the start of the output. ``name_key``/``arguments_key`` are
    the keys the template writes (the parser also accepts the common ones); ``array`` says the
    template puts calls in a JSON array (command-r, Mistral), which the grammar then asks for.
    """

    prefix: str = ""
    suffix: str = ""
    name_key: str = "name"
    arguments_key: str = "arguments"
    array: bool = False

    def __post_init__(self) -> None:
        if self.prefix != self.prefix.strip(_WS) or self.suffix != self.suffix.strip(_WS):
            raise ValueError("ToolFormat prefix and suffix are whitespace-trimmed")
        if not self.name_key or not self.arguments_key or self.name_key == self.arguments_key:
            raise ValueError("ToolFormat needs two distinct keys")

    def to_json(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "suffix": self.suffix, "name_key": self.name_key,
                "arguments_key": self.arguments_key, "array": self.array}

    @classmethod
    def from_json(cls, v: Mapping[str, Any]) -> ToolFormat:
        return cls(prefix=str(v.get("prefix", "")), suffix=str(v.get("suffix", "")),
                   name_key=str(v.get("name_key", "name")),
                   arguments_key=str(v.get("arguments_key", "arguments")),
                   array=bool(v.get("array", False)))


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """A parsed call. ``arguments`` keeps the model's key order; treat it as read-only."""

    id: str
    index: int
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError("ToolCall index must be >= 0")

    def to_wire(self) -> dict[str, Any]:
        """Ollama's ``api.ToolCall`` JSON (``id`` omitted when empty, as Go's omitempty)."""
        fn = {"index": self.index, "name": self.name, "arguments": self.arguments}
        return {"id": self.id, "function": fn} if self.id else {"function": fn}


def to_wire(calls: Iterable[ToolCall]) -> list[dict[str, Any]]:
    """``message.tool_calls`` in Ollama's shape; also what a follow-up request sends back."""
    return [c.to_wire() for c in calls]


def tool_names(tools: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The function names of a request's ``tools`` (entries without one are skipped)."""
    out: list[str] = []
    for t in tools:
        fn = t.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else None
        if isinstance(name, str) and name and name not in out:
            out.append(name)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Format detection

_NAME: Final = "@@name@@"
_ARG: Final = "@@argument@@"
_TEXT: Final = "@@content@@"
_USER: Final = "@@user@@"
# Mistral's jinja templates insist on 9-character alphanumeric call ids.
_CALL: Final[Mapping[str, Any]] = {
    "id": "call00000", "type": "function",
    "function": {"index": 0, "name": _NAME, "arguments": {_ARG: 1}},
}
_TOOL: Final[Mapping[str, Any]] = {
    "type": "function",
    "function": {"name": _NAME, "description": "",
                 "parameters": {"type": "object", "required": [_ARG],
                                "properties": {_ARG: {"type": "number"}}}},
}


def _conversations(call: Mapping[str, Any] = _CALL) -> tuple[list[Message], list[Message]]:
    user = Message(role="user", content=_USER)
    return ([user, Message(role="assistant", content=_TEXT)],
            [user, Message(role="assistant", content="", tool_calls=(dict(call),))])


def _find_call(obj: Any) -> dict[str, Any] | None:
    """The object (depth first) that holds the sentinel name."""
    if isinstance(obj, dict):
        if _NAME in obj.values():
            return obj
        obj = list(obj.values())
    if isinstance(obj, list):
        for v in obj:
            found = _find_call(v)
            if found is not None:
                return found
    return None


def _format_from_renders(plain: str, call: str) -> ToolFormat:
    """Compare a render with assistant text and one with a tool call (see the module doc)."""
    n = min(len(plain), len(call))
    p = 0
    while p < n and plain[p] == call[p]:
        p += 1
    s = 0
    while s < n - p and plain[-1 - s] == call[-1 - s]:
        s += 1
    middle = call[p:len(call) - s]
    at = middle.find(json.dumps(_NAME))
    if at < 0:
        return ToolFormat()
    decoder = json.JSONDecoder()
    for start in range(at):
        if middle[start] not in "{[":
            continue
        try:
            value, end = decoder.raw_decode(middle, start)
        except ValueError:
            continue
        if end <= at:
            continue
        obj = _find_call(value)
        if obj is None:
            return ToolFormat()
        name_key = next(k for k, v in obj.items() if v == _NAME)
        args_key = "arguments"
        for k, v in obj.items():
            if isinstance(v, str):
                try:
                    v = json.loads(v)
                except ValueError:
                    continue
            if v == {_ARG: 1}:
                args_key = k
        if args_key == name_key:
            args_key = "arguments" if name_key != "arguments" else "parameters"
        return ToolFormat(prefix=middle[:start].strip(_WS), suffix=middle[end:].strip(_WS),
                          name_key=name_key, arguments_key=args_key,
                          array=isinstance(value, list))
    return ToolFormat()


@functools.lru_cache(maxsize=64)
def detect_go(source: str) -> ToolFormat:
    """The tool-call format a Modelfile TEMPLATE (Go) shows; ``ToolFormat()`` when none."""
    plain, call = _conversations()
    try:
        tmpl = gotemplate.parse(source)
        if not tmpl.uses("ToolCalls"):
            return ToolFormat()
        return _format_from_renders(
            gotemplate.render_chat(tmpl, plain, tools=[_TOOL]),
            gotemplate.render_chat(tmpl, call, tools=[_TOOL]))
    except BadRequest:  # a template that cannot render our conversation shows no format
        return ToolFormat()


@functools.lru_cache(maxsize=64)
def detect_jinja(source: str, *, bos_token: str = "", eos_token: str = "") -> ToolFormat:
    """The tool-call format a GGUF ``tokenizer.chat_template`` shows; ``ToolFormat()`` when
    none (e.g. SmolLM2's template, which ignores tool calls).

    Some templates print ``arguments`` as they come, expecting the OpenAI-style JSON string;
    when arguments as an object show no format, they are tried as a string.
    """
    as_string = {**_CALL, "function": {**_CALL["function"], "arguments": json.dumps({_ARG: 1})}}
    for sentinel in (_CALL, as_string):
        plain, call = _conversations(sentinel)
        try:
            fmt = _format_from_renders(*(
                chat_template.render(source, [m.to_template() for m in conv],
                                     bos_token=bos_token, eos_token=eos_token,
                                     add_generation_prompt=False, tools=[_TOOL])
                for conv in (plain, call)))
        except BadRequest:
            continue
        if fmt != ToolFormat():
            return fmt
    return ToolFormat()


def detect(*, go_template: str | None, chat_template: str | None, bos_token: str = "",
           eos_token: str = "") -> ToolFormat:
    """The format of the template a request renders with (core.prompt.render's choice: the Go
    template when there is one, else the jinja one)."""
    if go_template is not None:
        return detect_go(go_template)
    if chat_template:
        return detect_jinja(chat_template, bos_token=bos_token, eos_token=eos_token)
    return ToolFormat()


# ---------------------------------------------------------------------------------------------
# Streaming parser


class _State(enum.Enum):
    LEAD = "lead"  # start of output or after a call block: ws held, JSON or prefix may follow
    SCAN = "scan"  # content, looking for the prefix
    PLAIN = "plain"  # content, nothing more to look for (no prefix)
    OPEN = "open"  # after a prefix, before its JSON
    JSON = "json"  # inside a JSON value
    BETWEEN = "between"  # after a call value: more JSON or the suffix may follow


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Go's decoder refuses NaN/Infinity


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _arguments(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        if not value.strip(_WS):
            return {}
        try:
            value = _loads(value)
        except (ValueError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def _one_call(obj: Any, fmt: ToolFormat,
              names: frozenset[str]) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # OpenAI's {"type": "function", "function": {...}}
        obj = obj["function"]
    name = next((obj[k] for k in (fmt.name_key, "name", "tool_name", "function")
                 if isinstance(obj.get(k), str)), None)
    if name not in names:
        return None
    assert isinstance(name, str)
    for key in (fmt.arguments_key, "arguments", "parameters"):
        if key in obj:
            args = _arguments(obj[key])
            return None if args is None else (name, args)
    # A call without arguments, {"name": "now"}, is a call of a tool taking none.
    if set(obj) <= {fmt.name_key, "name", "tool_name", "function", "id", "type"}:
        return name, {}
    return None


def _calls(value: Any, fmt: ToolFormat,
           names: frozenset[str]) -> list[tuple[str, dict[str, Any]]] | None:
    items = value if isinstance(value, list) else [value]
    if not items:
        return None
    out = []
    for item in items:
        call = _one_call(item, fmt, names)
        if call is None:
            return None
        out.append(call)
    return out


def _partial_prefix(text: str, token: str) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of ``token``."""
    for n in range(min(len(token) - 1, len(text)), 0, -1):
        if text.endswith(token[:n]):
            return n
    return 0


class ToolCallParser:
    """Split streamed model output into content and tool calls (see the module doc).

    ``feed(text)`` returns ``(content, calls)``: content safe to show now and the calls
    completed by this text. ``finish()`` returns what was still held. ``new_id`` makes each
    call's id (the adapter passes ``call_`` + 8 random ``[a-z0-9]``); ``index`` counts calls
    in this response from 0.
    """

    def __init__(self, fmt: ToolFormat, tool_names: Iterable[str], *,
                 new_id: Callable[[], str], max_call_chars: int = MAX_CALL_CHARS) -> None:
        self.fmt = fmt
        self.names = frozenset(tool_names)
        self._new_id = new_id
        self._max = max_call_chars
        self._state = _State.LEAD if self.names else _State.PLAIN
        self._held = ""  # undecided text before a JSON value: whitespace, prefix
        self._partial = ""  # what may be the start of the prefix or suffix (LEAD, BETWEEN)
        self._json: list[str] = []  # the JSON value being scanned
        self._stack: list[str] = []  # closers expected
        self._in_string = False
        self._escape = False
        self._size = 0
        self._count = 0
        self._finished = False

    @property
    def calls_found(self) -> int:
        return self._count

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        if self._finished:
            raise RuntimeError("ToolCallParser.feed after finish")
        out: list[str] = []
        calls: list[ToolCall] = []
        pending = text
        while pending:
            pending = self._step(pending, out, calls)
        return "".join(out), calls

    def finish(self) -> tuple[str, list[ToolCall]]:
        """End of output: held text that did not become a call is content."""
        if self._finished:
            return "", []
        self._finished = True
        st, held, partial = self._state, self._held, self._partial
        held += "".join(self._json)
        self._held, self._partial, self._json = "", "", []
        if st is _State.BETWEEN:
            return "", []  # whitespace or a cut-off suffix after a call: part of the block
        if st is _State.LEAD and self._count:
            return partial, []  # whitespace after a block is dropped, a cut-off prefix is not
        return held + partial, []

    # --- one step: consume some of ``pending``, return the rest -----------------------------

    def _step(self, pending: str, out: list[str], calls: list[ToolCall]) -> str:
        st = self._state
        if st is _State.PLAIN:
            out.append(pending)
            return ""
        if st is _State.SCAN:
            return self._scan(pending, out)
        if st is _State.JSON:
            return self._scan_json(pending, out, calls)
        # LEAD, OPEN, BETWEEN: whitespace is held until something decides; a partial prefix
        # or suffix is held and read again with the next piece.
        if self._partial:
            body, self._partial = self._partial + pending, ""
        else:
            body = pending.lstrip(_WS)
            self._held += pending[:len(pending) - len(body)]
            if not body:
                return ""
        prefix, suffix = self.fmt.prefix, self.fmt.suffix
        if st is _State.BETWEEN:
            if suffix and body.startswith(suffix):
                self._held = ""
                self._state = _State.LEAD
                return body[len(suffix):]
            if suffix and suffix.startswith(body):
                self._partial = body
                return ""
            st = self._state = _State.LEAD  # the block ended without its suffix
        if st is _State.LEAD:
            if prefix and body.startswith(prefix):
                self._held += prefix
                self._state = _State.OPEN
                return body[len(prefix):]
            if prefix and prefix.startswith(body):
                self._partial = body
                return ""
        if body[0] in "{[":  # JSON at the start of the output, after a block, after a prefix
            self._start_json()
            return body
        # Other text: everything held is content after all.
        out.append(self._held)
        self._held = ""
        self._state = _State.SCAN if prefix else _State.PLAIN
        return body

    def _scan(self, pending: str, out: list[str]) -> str:
        text = self._held + pending
        self._held = ""
        prefix = self.fmt.prefix
        at = text.find(prefix)
        if at >= 0:
            out.append(text[:at])
            self._held = prefix
            self._state = _State.OPEN
            return text[at + len(prefix):]
        keep = _partial_prefix(text, prefix)
        out.append(text[:len(text) - keep])
        self._held = text[len(text) - keep:]
        return ""

    def _start_json(self) -> None:
        self._state = _State.JSON
        self._json, self._stack = [], []
        self._in_string = self._escape = False
        self._size = 0

    def _scan_json(self, pending: str, out: list[str], calls: list[ToolCall]) -> str:
        stack = self._stack
        for i, c in enumerate(pending):
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif c == "\\":
                    self._escape = True
                elif c == '"':
                    self._in_string = False
                continue
            if c == '"':
                self._in_string = True
            elif c == "{" or c == "[":
                stack.append("}" if c == "{" else "]")
                if len(stack) > MAX_JSON_DEPTH:
                    return self._give_up(pending, i + 1, out)
            elif c == "}" or c == "]":
                if not stack or stack.pop() != c:
                    return self._give_up(pending, i + 1, out)
                if not stack:
                    return self._close_json(pending, i + 1, out, calls)
        self._json.append(pending)
        self._size += len(pending)
        if self._size > self._max:
            return self._give_up(pending, len(pending), out, appended=True)
        return ""

    def _close_json(self, pending: str, end: int, out: list[str],
                    calls: list[ToolCall]) -> str:
        text = "".join(self._json) + pending[:end]
        try:
            found = _calls(_loads(text), self.fmt, self.names)
        except (ValueError, RecursionError):
            found = None
        if found is None:
            return self._give_up(pending, end, out)
        for name, args in found:
            calls.append(ToolCall(id=self._new_id(), index=self._count, name=name,
                                  arguments=args))
            self._count += 1
        self._held, self._json = "", []
        self._state = _State.BETWEEN
        return pending[end:]

    def _give_up(self, pending: str, end: int, out: list[str], *, appended: bool = False) -> str:
        """Not a call: the held prefix/whitespace is content, the value's text is read again as
        content (it may hold a prefix further on)."""
        text = "".join(self._json) + ("" if appended else pending[:end])
        out.append(self._held)
        self._held, self._json = "", []
        self._state = _State.SCAN if self.fmt.prefix else _State.PLAIN
        return text + pending[end:]


# ---------------------------------------------------------------------------------------------
# Grammar


def tool_call_schema(tools: Sequence[Mapping[str, Any]], fmt: ToolFormat) -> dict[str, Any] | None:
    """A JSON schema for one call: ``anyOf`` over the tools of
    ``{<name_key>: <const name>, <arguments_key>: <the tool's parameters>}``.

    Each tool's ``$defs``/``definitions`` are lifted to the top (first tool wins on a clash) so
    ``#/$defs/...`` references still resolve. ``None`` when no tool has a name.
    """
    alternatives: list[dict[str, Any]] = []
    defs: dict[str, dict[str, Any]] = {"$defs": {}, "definitions": {}}
    seen: set[str] = set()
    for t in tools:
        fn = t.get("function")
        if not isinstance(fn, Mapping):
            continue
        name = fn.get("name")
        if not isinstance(name, str) or not name or name in seen:
            continue
        seen.add(name)
        raw = fn.get("parameters")
        params: dict[str, Any] = dict(raw) if isinstance(raw, Mapping) else {}
        for key in ("$defs", "definitions"):
            lifted = params.pop(key, None)
            if isinstance(lifted, Mapping):
                for k, v in lifted.items():
                    defs[key].setdefault(str(k), v)
        params.setdefault("type", "object")
        alternatives.append({
            "type": "object",
            "properties": {fmt.name_key: {"const": name}, fmt.arguments_key: params},
            "required": [fmt.name_key, fmt.arguments_key],
            "additionalProperties": False,
        })
    if not alternatives:
        return None
    schema: dict[str, Any] = {"anyOf": alternatives}
    schema.update({k: v for k, v in defs.items() if v})
    return schema


def _gbnf_char(c: str, *, in_class: bool = False) -> str:
    """One character for a GBNF string literal or (``in_class``) character class: printable
    ASCII as is, except what the syntax gives a meaning there; the rest as ``\\u``."""
    special = '\\[]^-' if in_class else '\\"'
    if " " <= c <= "~" and c not in special:
        return c
    cp = ord(c)
    return f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def _gbnf_literal(s: str) -> str:
    return '"' + "".join(_gbnf_char(c) for c in s) + '"'


def _text_without(token: str, rule: str) -> list[str]:
    """Rules for text that never contains ``token``: a KMP automaton, one rule per matched
    length, ``<rule>-0`` the start. Every state accepts, so the text may end anywhere."""
    n = len(token)
    fail = [0] * (n + 1)  # KMP failure function
    k = 0
    for i in range(1, n):
        while k and token[i] != token[k]:
            k = fail[k]
        if token[i] == token[k]:
            k += 1
        fail[i + 1] = k

    def step(state: int, c: str) -> int:
        while state and token[state] != c:
            state = fail[state]
        return state + 1 if token[state] == c else 0

    alphabet = sorted(set(token))
    rules = []
    for state in range(n):
        alts = []
        special = []  # characters that do not fall back to state 0
        for c in alphabet:
            nxt = step(state, c)
            if nxt == n:
                special.append(c)  # would complete the token: not allowed
            elif nxt:
                special.append(c)
                alts.append(f"{_gbnf_literal(c)} {rule}-{nxt}")
        other = ("[^" + "".join(_gbnf_char(c, in_class=True) for c in special) + "] "
                 if special else ". ")
        alts.insert(0, f"{other}{rule}-0")
        rules.append(f"{rule}-{state} ::= ( " + " | ".join(alts) + " )?")
    return rules


def _rename_rule(gbnf: str, old: str, new: str) -> str:
    """Rename rule ``old`` (definition and references), skipping literals and comments."""
    out: list[str] = []
    i, n = 0, len(gbnf)
    while i < n:
        c = gbnf[i]
        if c in "\"[":
            close = '"' if c == '"' else "]"
            j = i + 1
            while j < n and gbnf[j] != close:
                j += 2 if gbnf[j] == "\\" else 1
            out.append(gbnf[i:j + 1])
            i = j + 1
        elif c == "#":
            j = gbnf.find("\n", i)
            j = n if j < 0 else j
            out.append(gbnf[i:j])
            i = j
        elif c.isascii() and (c.isalnum() or c in "-_"):
            j = i
            while j < n and gbnf[j].isascii() and (gbnf[j].isalnum() or gbnf[j] in "-_"):
                j += 1
            word = gbnf[i:j]
            out.append(new if word == old else word)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _defined_rules(gbnf: str) -> set[str]:
    return {line.split("::=", 1)[0].strip() for line in gbnf.splitlines() if "::=" in line}


def tool_call_grammar(tools: Sequence[Mapping[str, Any]], fmt: ToolFormat, *,
                      json_schema_to_gbnf: Callable[[str], str],
                      allow_text: bool = True, parallel: bool = True) -> str | None:
    """A llama.cpp GBNF grammar for the answer of a request with ``tools``, or ``None`` when
    no tool has a name (generate unconstrained).

    ``json_schema_to_gbnf`` converts ``tool_call_schema`` (as a JSON string) to GBNF with a
    ``root`` rule; the runner passes ``llama_cpp.llama_grammar.json_schema_to_gbnf`` (core
    cannot import llama_cpp) and loads the result with ``LlamaGrammar.from_string``. If the
    converter raises (a client's odd schema), the runner should generate without a grammar.

    The language (``allow_text=False`` drops the free-text alternative)::

        root   ::= text calls?                  with a prefix: text never contains the prefix
        root   ::= ws calls | text              without one: text does not start with JSON
        calls  ::= block (ws block)*
        block  ::= prefix ws body ws suffix     body is a call, or a JSON array of calls when
                                                 the template writes one (command-r, Mistral)

    Free text is unconstrained until the prefix appears (as llama.cpp's lazy grammars), then
    the call must be valid. Once the calls are complete only the end of output may follow, so
    the model cannot trail text after a call. ``parallel=False`` allows exactly one call (one
    block, an array of one): small models otherwise tend to repeat a call until
    ``num_predict``.
    """
    schema = tool_call_schema(tools, fmt)
    if schema is None:
        return None
    json_gbnf = json_schema_to_gbnf(json.dumps(schema))
    taken = _defined_rules(json_gbnf)
    ns = "tool"  # our rules' namespace, clear of the converter's names
    while any(r == ns or r.startswith(ns + "-") for r in taken):
        ns += "x"
    call = f"{ns}-call"
    lines = [_rename_rule(json_gbnf, "root", call).strip()]
    ws = f"{ns}-ws"
    # A few whitespace characters around calls; unbounded runs let a small model stall.
    lines.append(f'{ws} ::= ([ \\t\\n] ([ \\t\\n] ([ \\t\\n] [ \\t\\n]?)?)?)?')
    more = f'( {ws} "," {ws} {call} )* ' if parallel else ""
    body = f'( {call} | "[" {ws} {call} {more}{ws} "]" )' if fmt.array else call
    parts = [_gbnf_literal(fmt.prefix), ws] if fmt.prefix else []
    parts.append(body)
    if fmt.suffix:
        parts += [ws, _gbnf_literal(fmt.suffix)]
    lines.append(f"{ns}-block ::= " + " ".join(parts))
    lines.append(f"{ns}-calls ::= {ns}-block" + (f" ( {ws} {ns}-block )*" if parallel else ""))
    text = f"{ns}-text"
    if not allow_text:
        lines.append(f"root ::= {ws} {ns}-calls")
    elif fmt.prefix:
        lines.append(f"root ::= {text}-0 {ns}-calls?")
        lines += _text_without(fmt.prefix, text)
    else:
        lines.append(f"root ::= {ws} {ns}-calls | {text}")
        # Leading whitespace, then anything that does not open a JSON value.
        lines.append(f'{text} ::= [ \\t\\n]* ( [^{{[ \\t\\n] .* )?')
    return "\n".join(lines) + "\n"
