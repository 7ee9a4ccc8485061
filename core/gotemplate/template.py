"""Ollama's ``template`` package on top of Go's engine: parsing with Ollama's touch-ups, and
Ollama's rendering modes (``template.Execute``).

``parse`` appends ``{{ .Response }}`` when a template mentions neither ``.Messages`` nor
``.Response`` and refuses ``{{template "x"}}`` without a pipeline, as Ollama does;
``parse_go`` is plain Go. ``render_chat`` runs messages mode (one execution with
``.Messages``) or legacy mode (one execution per system/user/assistant turn, the last one cut
after ``.Response`` so the model continues); ``render_suffix`` runs fill-in-middle mode.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import TemplateError
from ..requests import Message
from .api import template_messages, template_tools
from .exec import MAX_OUTPUT, MAX_STEPS, ExecError, State
from .parse import (
    MAX_DEPTH, ActionNode, BranchNode, CommandNode, FieldNode, ListNode, Node, ParseError,
    Parser, PipeNode, TemplateNode, VariableNode,
)

__all__ = ["Template", "parse", "parse_go", "uses", "render_chat", "render_suffix"]


def _identifiers(n: Node | None) -> list[str]:
    """Ollama template.Identifiers: every field and variable name the tree mentions."""
    if n is None:
        return []
    if isinstance(n, ListNode):
        return [i for c in n.nodes for i in _identifiers(c)]
    if isinstance(n, (ActionNode, TemplateNode)):
        return _identifiers(n.pipe)
    if isinstance(n, BranchNode):
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

    def walk(n: Node) -> Node | None:
        nonlocal cut
        if isinstance(n, FieldNode) and "Response" in n.ident:
            cut = True
            return n
        if cut:
            return None
        if isinstance(n, ListNode):
            kept = [w for c in n.nodes if (w := walk(c)) is not None]
            return dataclasses.replace(n, nodes=tuple(kept))
        if isinstance(n, BranchNode):
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
        st = State(self.source, self.trees, day, max_output, max_steps)
        try:
            return st.execute(root, dict(data))
        except ExecError as e:
            raise TemplateError(str(e)) from None
        except RecursionError:
            raise TemplateError(
                f"template: : exceeded maximum template depth ({MAX_DEPTH})") from None


def _parse_trees(text: str) -> dict[str, ListNode]:
    try:
        return Parser(text).parse()
    except ParseError as e:
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


def _has_bare_template_call(n: Node | None) -> bool:
    if isinstance(n, TemplateNode):
        return n.pipe is None
    if isinstance(n, ListNode):
        return any(_has_bare_template_call(c) for c in n.nodes)
    if isinstance(n, BranchNode):
        return _has_bare_template_call(n.list) or _has_bare_template_call(n.else_list)
    return False


def uses(template: Template, name: str) -> bool:
    """Whether ``template`` mentions ``.Name`` (``Messages``, ``Tools``, ``Suffix``, ...)."""
    return template.uses(name)


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
    """The prompt for ``messages``: messages mode when the template uses ``.Messages``, else
    legacy mode (Ollama ``template/template.go``, ``Template.Execute``)."""
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
    (Ollama ``Template.Execute``'s suffix branch; it passes nothing else, so ``.System`` prints
    ``<no value>``)."""
    return template.execute({
        "Prompt": prompt, "Suffix": suffix, "Response": "", "Think": bool(think),
        "ThinkLevel": think_level, "IsThinkSet": is_think_set,
    }, today=today, max_output=max_output, max_steps=max_steps)
