"""Execution of a parsed template (Go ``text/template/exec.go``) with ``missingkey=zero``.

``State`` walks a tree over a data value and collects the output. Go's typing shows where
templates can observe it: a value that sat in an ``interface{}`` slot (an element of decoded
JSON, a missing map key) is a nil interface that errors on field access, and ``len``/``slice``
word their errors by it. Untrusted templates are bounded: output size, steps and template
recursion are capped, and every failure is an ``ExecError`` with Go's message.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from .fmt import go_sprint, printable
from .funcs import FUNCS, Func, FuncError, IfaceArg, holds_any, map_zero, plain
from .parse import (
    MAX_DEPTH, ActionNode, BoolNode, BreakNode, ChainNode, CommandNode, ContinueNode, DotNode,
    FieldNode, IdentifierNode, IfNode, ListNode, NilNode, Node, NumberNode, PipeNode, RangeNode,
    StringNode, TemplateNode, TextNode, VariableNode, WithNode,
)
from .strconv import quote
from .values import SEQ_TYPES, GoStruct, sorted_keys, truth, type_name

__all__ = ["MAX_OUTPUT", "MAX_STEPS", "ExecError", "State"]

MAX_OUTPUT: Final = 16 * 1024 * 1024  # characters one execution may produce
MAX_STEPS: Final = 1_000_000  # nodes walked / commands evaluated in one execution


class ExecError(Exception):
    """Execution failed; the message is Go's (``template: :1:3: executing "" at <.X>: ...``)."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


_MISSING: Final = object()  # Go's missingVal: "no final value from a previous command"


@dataclass(slots=True)
class _Variable:
    """A variable in scope; ``iface``: its value sat in an ``interface{}`` slot."""

    name: str
    value: Any
    iface: bool = False


class State:
    """One execution of a template (Go's ``state``): output so far, variables in scope, the
    step and output budgets, and the node being evaluated (for Go's error positions)."""

    def __init__(self, source: str, trees: Mapping[str, ListNode], today: _dt.date,
                 max_output: int, max_steps: int) -> None:
        self.source = source
        self.trees = trees  # the templates {{template}} can call, by name
        self.today = today
        self.max_output = max_output
        self.max_steps = max_steps
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.depth = 0
        self.vars: list[_Variable] = []
        self.name = ""
        self.node: Node | None = None
        self.dot_iface = False  # dot is an element of []any / map[string]any
        self.arg_iface = False  # the last field/variable evaluated sat in an interface{}

    def execute(self, root: ListNode, data: dict[str, Any]) -> str:
        """Walk ``root`` with ``data`` as dot and ``$``; the output."""
        self.vars = [_Variable("$", data)]
        self.walk(data, root)
        return "".join(self.out)

    # -- errors and bookkeeping
    def errorf(self, msg: str) -> NoReturn:
        name = self.name
        node = self.node
        if node is None:
            raise ExecError(f"template: {name}: {msg}")
        text = self.source
        pos = min(node.pos, len(text))
        before = text[:pos]
        nl = before.rfind("\n")
        line = 1 + before.count("\n")
        col = len(before[nl + 1:].encode("utf-8", "replace")) if nl >= 0 else len(
            before.encode("utf-8", "replace"))
        raise ExecError(f"template: :{line}:{col}: executing {quote(name)} at <{node}>: {msg}")

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
            if v.name == name:
                v.value, v.iface = value, iface
                return
        self.errorf(f"undefined variable: {name}")

    def var_entry(self, name: str) -> tuple[Any, bool]:
        for v in reversed(self.vars):
            if v.name == name:
                return v.value, v.iface
        self.errorf(f"undefined variable: {name}")

    def walk_dot(self, dot: Any, iface: bool, node: Node) -> None:
        saved, self.dot_iface = self.dot_iface, iface
        try:
            self.walk(dot, node)
        finally:
            self.dot_iface = saved

    # -- walking
    def walk(self, dot: Any, node: Node) -> None:
        self.step()
        self.node = node
        if isinstance(node, TextNode):
            self.write(node.text)
        elif isinstance(node, ActionNode):
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.node = node
                self.write(printable(val))
        elif isinstance(node, ListNode):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, (IfNode, WithNode)):
            mark = len(self.vars)
            try:
                val = self.eval_pipeline(dot, node.pipe)
                if isinstance(node, WithNode) and truth(val):
                    self.walk_dot(val, False, node.list)
                elif truth(val):
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

            elem_iface = holds_any(val)

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
                        self.vars[-1].value, self.vars[-1].iface = elem, iface
                if len(decl) > 1:
                    if r.pipe.is_assign:
                        self.set_var(decl[1].ident[0], elem, iface)
                    else:
                        self.vars[-2].value, self.vars[-2].iface = index, False
                try:
                    self.walk_dot(elem, iface, r.list)
                except _Continue:
                    pass
                finally:
                    del self.vars[mark:]

            try:
                if isinstance(val, SEQ_TYPES):
                    if val:
                        for i, e in enumerate(val):
                            one(i, e)
                        return
                elif isinstance(val, dict):
                    if val:
                        for k in sorted_keys(val):
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
        tree = self.trees.get(t.name)
        if tree is None:
            self.errorf(f"template {quote(t.name)} not defined")
        if self.depth >= MAX_DEPTH:
            self.errorf(f"exceeded maximum template depth ({MAX_DEPTH})")
        dot = self.eval_pipeline(dot, t.pipe)  # variables it declares persist
        saved = (self.vars, self.name)
        self.vars, self.name = [_Variable("$", dot)], t.name
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
                self.vars.append(_Variable(v.ident[0], value))
        return value

    def not_a_function(self, args: Sequence[Node], final: Any) -> None:
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
        self.errorf(f"can't evaluate command {quote(str(first))}")

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

    def eval_chain(self, dot: Any, chain: ChainNode, args: Sequence[Node], final: Any) -> Any:
        self.node = chain
        if isinstance(chain.node, NilNode):
            self.errorf(f"indirection through explicit nil in {chain}")
        receiver = self.eval_arg(dot, "any", chain.node)
        return self.eval_field_chain(dot, receiver, False, chain, chain.fields, args, final)

    def eval_variable(self, dot: Any, var: VariableNode, args: Sequence[Node] | None,
                      final: Any) -> Any:
        self.node = var
        value, iface = self.var_entry(var.ident[0])
        if len(var.ident) == 1:
            self.not_a_function(args or (var,), final)
            self.arg_iface = iface
            return value
        return self.eval_field_chain(dot, value, iface, var, var.ident[1:], args, final)

    def eval_field_chain(self, dot: Any, receiver: Any, iface: bool, node: Node,
                         ident: Sequence[str], args: Sequence[Node] | None, final: Any) -> Any:
        for name in ident[:-1]:
            receiver, iface = self.eval_field(name, node, None, _MISSING, receiver, iface)
        value, self.arg_iface = self.eval_field(ident[-1], node, args, final, receiver, iface)
        return value

    def eval_field(self, name: str, node: Node, args: Sequence[Node] | None, final: Any,
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
            any_values = holds_any(receiver)
            if name in receiver:
                value = receiver[name]
                return value, any_values and not isinstance(value, GoStruct)
            return map_zero(receiver), any_values
        typ = "interface {}" if iface else type_name(receiver)
        self.errorf(f"can't evaluate field {name} in type {typ}")

    def eval_function(self, dot: Any, node: IdentifierNode, cmd: Node,
                      args: Sequence[Node] | None, final: Any) -> Any:
        self.node = node
        fn = FUNCS.get(node.name)
        if fn is None:
            self.errorf(f"{quote(node.name)} is not a defined function")
        return self.eval_call(dot, fn, cmd, node.name, args, final)

    def eval_call(self, dot: Any, fn: Func, node: Node, name: str,
                  args: Sequence[Node] | None, final: Any) -> Any:
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
                if truth(v) == (name == "or"):
                    return v
            if final is not _MISSING:
                v = final
            return v
        argv: list[Any] = []
        for i, a in enumerate(rest):
            kind = fn.fixed[i] if i < nfixed else fn.variadic
            assert kind is not None
            self.arg_iface = False
            v = self.eval_arg(dot, kind, a)
            argv.append(IfaceArg(v) if fn.sees_iface and self.arg_iface else v)
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
            argv = [plain(a) for a in argv]
        try:
            result = fn.impl(self, name, argv)
        except FuncError as e:
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
                self.errorf(f"wrong type for value; expected string; got {type_name(value)}")
        return value

    def eval_arg(self, dot: Any, kind: str, n: Node) -> Any:
        value = self.eval_arg_(dot, kind, n)
        if not isinstance(n, (FieldNode, VariableNode)):
            self.arg_iface = isinstance(n, DotNode) and self.dot_iface
        return value

    def eval_arg_(self, dot: Any, kind: str, n: Node) -> Any:
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
