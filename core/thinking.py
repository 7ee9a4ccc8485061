"""Thinking (reasoning) output: which models can think, the ``think`` setting, and splitting
streamed text into ``thinking`` and content (Ollama's api/types.go ThinkValue; server/routes.go
ChatHandler; template/template.go).

Theory of operation. A model can think when its template shows the tags it wraps reasoning in.
For a Go template this is Ollama's ``thinking.InferTags`` heuristic over the parse tree: find a
``.Thinking`` field inside a ``range`` over ``.Messages``, go up to the nearest list node and
take its first and last text nodes (whitespace trimmed) as the opening and closing tag; a later
``.Thinking`` overrides an earlier one, and a tag is only replaced when that end of the list is
text. For a GGUF (jinja) chat template it is Ollama's ``InferTagsFromChatTemplate``: the first
pair of a fixed table whose two halves both appear literally in the template, else a pair whose
closing tag the template splits assistant content on (Qwen/DeepSeek strip old reasoning so).

``resolve_think`` turns the request's ``think`` into what templates see (``.Think``,
``.ThinkLevel``, ``.IsThinkSet``) and refuses ``true``/levels for models that cannot think.

``ThinkingParser`` is Ollama's ``thinking.Parser`` as a small push parser::

    LOOKING_FOR_OPENING --open tag--> THINKING_STARTED_EATING_WHITESPACE --text--> THINKING
    THINKING --close tag--> THINKING_DONE_EATING_WHITESPACE --text--> THINKING_DONE
    LOOKING_FOR_OPENING --any other text--> THINKING_DONE   (no thinking at all)

Leading whitespace before the opening tag, right after it and right after the closing tag is
dropped (Go's ``unicode.IsSpace``). Text that could still be the start of a tag is held back
until the next piece decides it. Text before the opening tag means the model did not think: all
of it, tags included, is content. Only the first closing tag ends thinking; anything after it is
content verbatim. With no closing tag everything after the opening tag is thinking.

Invariant (tested with Hypothesis): for any input ``s`` fed in any split, followed by
``finish()``, the concatenated outputs ``(thinking, content)`` are

* ``("", s)`` when ``s`` without its leading whitespace does not start with the opening tag;
* otherwise ``s == ws + open + ws + thinking + close + ws + content`` where each ``ws`` is a
  maximal run of whitespace and ``thinking`` holds no closing tag, or, when no closing tag
  follows the opening one, ``s == ws + open + ws + thinking`` and ``content == ""``.

So ``thinking + content`` is ``s`` minus the first opening tag, the first closing tag after it,
and the whitespace just before/after them. ``starts_in_thinking=True`` behaves as if the opening
tag had been fed first (Ollama feeds it when the rendered prompt ends with the opening tag).

Ollama never flushes its parser at the end of a response, so a trailing partial closing tag
(``"</thi"``) or a response that is only whitespace or a partial opening tag is lost there;
``finish()`` hands such held text back (as thinking, respectively content) instead.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from . import gotemplate
from .errors import BadRequest
from .names import parse_name
from .requests import THINK_LEVELS, Message, _think

__all__ = [
    "GO_WHITESPACE",
    "THINK_TAGS",
    "ThinkSetting",
    "ThinkingParser",
    "ThinkingState",
    "ThinkingTags",
    "capable",
    "infer_go_tags",
    "infer_jinja_tags",
    "infer_tags",
    "prompt_opens_thinking",
    "resolve_think",
    "strip_previous_thinking",
    "strips_previous_thinking",
]

# Go's unicode.IsSpace. Python's str.isspace() also counts U+001C..U+001F, which Go does not.
GO_WHITESPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _lstrip(s: str) -> str:
    return s.lstrip(GO_WHITESPACE)


def _strip(s: str) -> str:
    return s.strip(GO_WHITESPACE)


# ---------------------------------------------------------------------------------------------
# Tags and capability


@dataclass(frozen=True, slots=True)
class ThinkingTags:
    """The literal text a model puts around its reasoning, e.g. ``<think>`` / ``</think>``."""

    open: str
    close: str

    def __post_init__(self) -> None:
        if not self.open or not self.close:
            raise ValueError(f"thinking tags must not be empty: {self!r}")


THINK_TAGS: Final = ThinkingTags("<think>", "</think>")

# Ollama's chatTemplateThinkTags: pairs a GGUF chat template can render reasoning between, in
# the order they are tried.
_JINJA_TAG_PAIRS: Final = (
    THINK_TAGS,
    ThinkingTags("<|channel>", "<channel|>"),
    ThinkingTags("<|START_THINKING|>", "<|END_THINKING|>"),
    ThinkingTags("<seed:think>", "</seed:think>"),
)

_Node = Any  # gotemplate's node classes share a private base; the walk below dispatches on type
_BRANCHES: Final = (gotemplate.IfNode, gotemplate.RangeNode, gotemplate.WithNode)


def _children(n: _Node) -> list[_Node]:
    """Child order of Ollama's templateVisit (Go's parse tree: lists, branches, pipelines)."""
    if isinstance(n, gotemplate.ListNode):
        return list(n.nodes)
    if isinstance(n, _BRANCHES):
        return [c for c in (n.pipe, n.list, n.else_list) if c is not None]
    if isinstance(n, (gotemplate.ActionNode, gotemplate.TemplateNode)):
        return [n.pipe] if n.pipe is not None else []
    if isinstance(n, gotemplate.PipeNode):
        return list(n.cmds)
    if isinstance(n, gotemplate.CommandNode):
        return list(n.args)
    return []  # text, fields, variables, constants, chains: leaves for this walk


def _mentions_field(n: _Node, name: str) -> bool:
    if isinstance(n, gotemplate.FieldNode):
        return bool(n.ident) and n.ident[0] == name
    return any(_mentions_field(c, name) for c in _children(n))


def infer_go_tags(template: gotemplate.Template) -> ThinkingTags | None:
    """Ollama's ``thinking.InferTags`` on a parsed Go template; None when no pair is found."""
    opening = closing = ""
    ancestors: list[_Node] = []

    def visit(n: _Node) -> None:
        nonlocal opening, closing
        ancestors.append(n)
        if isinstance(n, gotemplate.FieldNode) and n.ident and n.ident[0] == "Thinking":
            rng = next((a for a in reversed(ancestors)
                        if isinstance(a, gotemplate.RangeNode)), None)
            if rng is not None and _mentions_field(rng.pipe, "Messages"):
                lst = next(a for a in reversed(ancestors) if isinstance(a, gotemplate.ListNode))
                if lst.nodes and isinstance(lst.nodes[0], gotemplate.TextNode):
                    opening = _strip(lst.nodes[0].text)
                if lst.nodes and isinstance(lst.nodes[-1], gotemplate.TextNode):
                    closing = _strip(lst.nodes[-1].text)
        for c in _children(n):
            visit(c)
        ancestors.pop()

    visit(template.root)
    return ThinkingTags(opening, closing) if opening and closing else None


def infer_jinja_tags(text: str) -> ThinkingTags | None:
    """Ollama's ``InferTagsFromChatTemplate``: tags a GGUF chat template renders reasoning in.

    Literal on purpose: both halves must appear, because the parser needs a closing tag that
    the model really emits. Qwen/DeepSeek templates that only split old reasoning off
    (``content.split('</think>')``) never write the opening tag but the model emits both."""
    for pair in _JINJA_TAG_PAIRS:
        if pair.open in text and pair.close in text:
            return pair
    for pair in _JINJA_TAG_PAIRS:
        if f"content.split('{pair.close}')" in text or f'content.split("{pair.close}")' in text:
            return pair
    return None


def infer_tags(template_text: str | None, *, is_go: bool) -> ThinkingTags | None:
    """Thinking tags of a model's template: a Modelfile TEMPLATE (``is_go``, Ollama's template
    syntax) or a GGUF ``tokenizer.chat_template`` (jinja). None when the model cannot think;
    a Go template that does not parse cannot think either."""
    if not template_text:
        return None
    if not is_go:
        return infer_jinja_tags(template_text)
    try:
        tmpl = gotemplate.parse(template_text)
    except gotemplate.TemplateError:
        return None
    return infer_go_tags(tmpl)


def capable(template_text: str | None, is_go: bool) -> bool:
    """Whether a model with this template has the ``thinking`` capability (Ollama's
    template/template.go)."""
    return infer_tags(template_text, is_go=is_go) is not None


# ---------------------------------------------------------------------------------------------
# The request's think value


@dataclass(frozen=True, slots=True, kw_only=True)
class ThinkSetting:
    """What templates see of ``think``: ``.Think`` (``think``, None when unset), ``.ThinkLevel``
    (``level``) and ``.IsThinkSet`` (``is_set``). Build with ``resolve_think``."""

    think: bool | None
    level: str
    is_set: bool

    def __post_init__(self) -> None:
        if self.think is None:
            ok = self.level == "" and not self.is_set
        elif self.think:
            ok = self.level in THINK_LEVELS and self.is_set
        else:
            ok = self.level == "" and self.is_set
        if not ok:
            raise ValueError(f"inconsistent think setting: {self!r}")

    @property
    def enabled(self) -> bool:
        """Thinking is on: split the output with a ``ThinkingParser`` (when the model has tags)."""
        return self.think is True

    def render_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``gotemplate.render_chat`` / ``render_suffix``."""
        return {"think": self.enabled, "think_level": self.level, "is_think_set": self.is_set}


_REPULL_HINT: Final = ". Pull the model again to get the latest version with full thinking support"


def _go_quote(s: str) -> str:
    """Go's ``%q`` for the printable strings model names are."""
    return json.dumps(s, ensure_ascii=False)


def resolve_think(requested: Any, capable: bool, model_name: str, *,
                  family: str = "", relax: bool = False) -> ThinkSetting:
    """Apply Ollama's ``think`` rules (api/types.go ThinkValue) to the request's ``think`` (None
    when omitted).

    A thinking model thinks unless told ``false``; ``true`` means level ``medium``. Ollama sets
    the omitted value to ``true`` *before* rendering, so ``.IsThinkSet`` is then true as well
    (routes.go; the template only sees a nil ``think`` for models that cannot think). A model
    without the capability refuses ``true`` or a level with 400 ``"<model>" does not support
    thinking`` (``model_name`` as the client wrote it), with a hint to re-pull for qwen3 /
    deepseek-r1; ``false`` is accepted and reaches the template as such.
    """
    value = _think(requested)
    if relax and not capable:
        value = None  # Ollama's /v1/messages: a model that cannot think ignores the request
    if value is None:
        if not capable:
            return ThinkSetting(think=None, level="", is_set=False)
        value = True
    if value is False:
        return ThinkSetting(think=False, level="", is_set=True)
    if not capable:
        message = f"{_go_quote(model_name)} does not support thinking"
        if strips_previous_thinking(family, model_name):
            message += _REPULL_HINT
        raise BadRequest(message)
    return ThinkSetting(think=True, level="medium" if value is True else value, is_set=True)


# ---------------------------------------------------------------------------------------------
# Splitting output


class ThinkingState(enum.Enum):
    LOOKING_FOR_OPENING = "LookingForOpening"
    THINKING_STARTED_EATING_WHITESPACE = "ThinkingStartedEatingWhitespace"
    THINKING = "Thinking"
    THINKING_DONE_EATING_WHITESPACE = "ThinkingDoneEatingWhitespace"
    THINKING_DONE = "ThinkingDone"


def _overlap(s: str, delim: str) -> int:
    """Length of the longest end of ``s`` that is a proper start of ``delim``."""
    for n in range(min(len(delim) - 1, len(s)), 0, -1):
        if s.endswith(delim[:n]):
            return n
    return 0


def prompt_opens_thinking(prompt: str, tags: ThinkingTags) -> bool:
    """Whether the rendered prompt leaves the model inside thinking (it ends with the opening
    tag, whitespace aside), so the response starts with reasoning and no opening tag."""
    return _strip(prompt).endswith(tags.open)


def through_closing_tag(raw: str, tags: ThinkingTags) -> str:
    """The model's raw text up to and including the tag that ends its reasoning; ``""`` when
    it answered without reasoning. The answer pass of a ``format`` request continues the
    prompt with this (the reasoning cannot contain the closing tag: it ends there)."""
    i = raw.find(tags.close)
    return raw[:i + len(tags.close)] if i >= 0 else ""


class ThinkingParser:
    """Split streamed model text into ``(thinking, content)`` pieces (see module docstring).

    ``feed`` returns what is decided so far; ``finish`` returns what was held back at the end.
    Held text is at most a partial tag plus the whitespace before an opening tag.
    """

    __slots__ = ("_acc", "_finished", "_lead", "_state", "tags")

    def __init__(self, tags: ThinkingTags, *, starts_in_thinking: bool = False) -> None:
        self.tags = tags
        self._state = (ThinkingState.THINKING_STARTED_EATING_WHITESPACE if starts_in_thinking
                       else ThinkingState.LOOKING_FOR_OPENING)
        self._lead: list[str] = []  # whitespace before a possible opening tag
        self._acc = ""  # undecided text: a partial opening tag, or a partial closing tag
        self._finished = False

    def __repr__(self) -> str:
        return (f"ThinkingParser({self.tags!r}, starts_in_thinking="
                f"{self._state is ThinkingState.THINKING_STARTED_EATING_WHITESPACE})")

    @classmethod
    def for_prompt(cls, tags: ThinkingTags, prompt: str) -> ThinkingParser:
        """A parser for the response to ``prompt`` (Ollama's chat/generate handlers)."""
        return cls(tags, starts_in_thinking=prompt_opens_thinking(prompt, tags))

    @property
    def state(self) -> ThinkingState:
        return self._state

    def feed(self, text: str) -> tuple[str, str]:
        """Add a decoded piece; return the ``(thinking, content)`` that is decided now."""
        if self._finished:
            raise RuntimeError("ThinkingParser.feed() after finish()")
        S = ThinkingState
        opening, closing = self.tags.open, self.tags.close
        if self._state is S.LOOKING_FOR_OPENING:
            if not self._acc:
                rest = _lstrip(text)
                self._lead.append(text[:len(text) - len(rest)])
                text = rest
            acc = self._acc + text  # the text after the leading whitespace
            if acc.startswith(opening):
                self._lead.clear()
                self._acc = ""
                self._state = S.THINKING_STARTED_EATING_WHITESPACE
                text = acc[len(opening):]
            elif opening.startswith(acc):
                self._acc = acc  # a partial opening tag, or nothing but whitespace yet
                return "", ""
            else:
                # Text before any opening tag: the model did not think. Keep the whitespace.
                content = "".join(self._lead) + acc
                self._lead.clear()
                self._acc = ""
                self._state = S.THINKING_DONE
                return "", content
        if self._state is S.THINKING_STARTED_EATING_WHITESPACE:
            text = _lstrip(text)
            if not text:
                return "", ""
            self._state = S.THINKING
        if self._state is S.THINKING:
            acc = self._acc + text
            i = acc.find(closing)
            if i >= 0:
                self._acc = ""
                content = _lstrip(acc[i + len(closing):])
                self._state = S.THINKING_DONE if content else S.THINKING_DONE_EATING_WHITESPACE
                return acc[:i], content
            keep = _overlap(acc, closing)
            self._acc = acc[len(acc) - keep:]
            return acc[:len(acc) - keep], ""
        if self._state is S.THINKING_DONE_EATING_WHITESPACE:
            text = _lstrip(text)
            if text:
                self._state = S.THINKING_DONE
            return "", text
        return "", text

    def finish(self) -> tuple[str, str]:
        """End of the response: release held text (it was not a tag after all)."""
        if self._finished:
            return "", ""
        self._finished = True
        held, self._acc = self._acc, ""
        if self._state is ThinkingState.LOOKING_FOR_OPENING:
            lead = "".join(self._lead)
            self._lead.clear()
            return "", lead + held
        return held, ""


# ---------------------------------------------------------------------------------------------
# Earlier assistant turns


def _bare_model(model_name: str) -> str:
    try:
        return parse_name(model_name).model
    except BadRequest:
        return model_name


def strips_previous_thinking(family: str, model_name: str = "") -> bool:
    """Ollama's test in ``filterThinkTags``: the qwen3 family or a model named deepseek-r1
    (whatever its family: the R1 distills are qwen2/llama)."""
    return family == "qwen3" or "deepseek-r1" in (family, _bare_model(model_name))


def strip_previous_thinking(messages: Sequence[Message], family: str, *,
                            model_name: str = "") -> list[Message]:
    """Remove ``<think>…</think>`` from assistant turns before the last user message, for the
    families of ``strips_previous_thinking`` (Ollama's server/routes.go ChatHandler); other models
    get the messages back unchanged.

    Exactly Ollama's ``filterThinkTags``: each content goes once through a fresh parser with
    ``<think>``/``</think>`` and only the content part is kept, unflushed, so a turn that is
    all whitespace, or ends inside an unclosed ``<think>``, keeps nothing of that. ``thinking``
    fields are left alone; the template decides whether to show them.
    """
    out = list(messages)
    if not strips_previous_thinking(family, model_name):
        return out
    last_user = max((i for i, m in enumerate(out) if m.role == "user"), default=-1)
    for i in range(last_user):
        m = out[i]
        if m.role == "assistant":
            _, content = ThinkingParser(THINK_TAGS).feed(m.content)
            if content != m.content:
                out[i] = dataclasses.replace(m, content=content)
    return out
