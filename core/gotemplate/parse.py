"""The parse tree and the parser of Go templates (Go ``text/template/parse/node.go`` and
``parse.go``).

``Parser(text).parse()`` returns the named trees: ``""`` is the main template, the others come
from ``{{define}}`` and ``{{block}}``. Nodes are frozen dataclasses whose ``__str__`` is Go's
``Node.String()``. Errors are ``ParseError`` with Go's message (``template: :1: ...``); nesting
of parentheses and control structures is capped at ``MAX_DEPTH``. Functions are resolved at
parse time against Go's builtins and Ollama's ``FuncMap``, as Go does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Final, NoReturn

from .lex import Lexer, Token, TokenType
from .strconv import INT64_MAX, INT64_MIN, UINT64_MAX, parse_float, parse_uint, quote, unquote

__all__ = [
    "MAX_DEPTH", "ParseError", "Node", "TextNode", "ListNode", "FieldNode", "VariableNode",
    "IdentifierNode", "DotNode", "NilNode", "BoolNode", "NumberNode", "StringNode",
    "CommandNode", "PipeNode", "ChainNode", "ActionNode", "BranchNode", "IfNode", "RangeNode",
    "WithNode", "BreakNode", "ContinueNode", "TemplateNode", "Parser",
]

MAX_DEPTH: Final = 100  # nesting of parens and control structures, and of template calls


class ParseError(Exception):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    pos: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TextNode(Node):
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True, kw_only=True)
class ListNode(Node):
    nodes: tuple[Node, ...]

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldNode(Node):
    ident: tuple[str, ...]

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


@dataclass(frozen=True, slots=True, kw_only=True)
class VariableNode(Node):
    ident: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join(self.ident)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentifierNode(Node):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class DotNode(Node):
    def __str__(self) -> str:
        return "."


@dataclass(frozen=True, slots=True, kw_only=True)
class NilNode(Node):
    def __str__(self) -> str:
        return "nil"


@dataclass(frozen=True, slots=True, kw_only=True)
class BoolNode(Node):
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberNode(Node):
    text: str
    is_int: bool = False
    is_uint: bool = False
    is_float: bool = False
    int_val: int = 0
    float_val: float = 0.0

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True, kw_only=True)
class StringNode(Node):
    quoted: str
    text: str

    def __str__(self) -> str:
        return self.quoted


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandNode(Node):
    args: tuple[Node, ...]

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, PipeNode) else str(a) for a in self.args)


@dataclass(frozen=True, slots=True, kw_only=True)
class PipeNode(Node):
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
class ChainNode(Node):
    node: Node
    fields: tuple[str, ...]

    def __str__(self) -> str:
        s = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return s + "".join("." + f for f in self.fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionNode(Node):
    line: int
    pipe: PipeNode

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchNode(Node):
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
class IfNode(BranchNode):
    keyword: ClassVar[str] = "if"


@dataclass(frozen=True, slots=True, kw_only=True)
class RangeNode(BranchNode):
    keyword: ClassVar[str] = "range"


@dataclass(frozen=True, slots=True, kw_only=True)
class WithNode(BranchNode):
    keyword: ClassVar[str] = "with"


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakNode(Node):
    def __str__(self) -> str:
        return "{{break}}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContinueNode(Node):
    def __str__(self) -> str:
        return "{{continue}}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateNode(Node):
    line: int
    name: str
    pipe: PipeNode | None

    def __str__(self) -> str:
        if self.pipe is None:
            return "{{template " + quote(self.name) + "}}"
        return "{{template " + quote(self.name) + " " + str(self.pipe) + "}}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _EndNode(Node):
    def __str__(self) -> str:
        return "{{end}}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _ElseNode(Node):
    def __str__(self) -> str:
        return "{{else}}"


def _is_empty_tree(n: Node | None) -> bool:
    if n is None:
        return True
    if isinstance(n, ListNode):
        return all(_is_empty_tree(c) for c in n.nodes)
    if isinstance(n, TextNode):
        return n.text.strip(" \t\r\n\v\f\x85\xa0") == ""
    return False


_BUILTIN_NAMES: Final = frozenset({
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
})
_OLLAMA_NAMES: Final = frozenset({"json", "currentDate", "yesterdayDate", "toTypeScriptType"})
_FUNC_NAMES: Final = _BUILTIN_NAMES | _OLLAMA_NAMES

_OPERAND_START: Final = frozenset({
    TokenType.BOOL, TokenType.CHAR_CONSTANT, TokenType.COMPLEX, TokenType.DOT, TokenType.FIELD,
    TokenType.IDENTIFIER, TokenType.NUMBER, TokenType.NIL, TokenType.RAW_STRING, TokenType.STRING,
    TokenType.VARIABLE, TokenType.LEFT_PAREN,
})


class Parser:
    def __init__(self, text: str) -> None:
        self.toks = Lexer(text).run()
        self.i = 0
        self.far = 0  # furthest token read: Go reports errors at the lexer's last item
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.depth = 0
        self.action_line = 0
        self.trees: dict[str, ListNode] = {}

    # -- token stream
    def next(self) -> Token:
        i = min(self.i, len(self.toks) - 1)
        self.far = max(self.far, i)
        self.i += 1
        return self.toks[i]

    def backup(self, n: int = 1) -> None:
        self.i -= n

    def peek(self) -> Token:
        i = min(self.i, len(self.toks) - 1)
        self.far = max(self.far, i)
        return self.toks[i]

    def next_non_space(self) -> Token:
        while True:
            t = self.next()
            if t.typ != TokenType.SPACE:
                return t

    def peek_non_space(self) -> Token:
        t = self.next_non_space()
        self.backup()
        return t

    def errorf(self, msg: str) -> NoReturn:
        raise ParseError(f"template: :{self.toks[self.far].line}: {msg}")

    def expect(self, typ: TokenType, context: str) -> Token:
        t = self.next_non_space()
        if t.typ != typ:
            self.unexpected(t, context)
        return t

    def unexpected(self, tok: Token, context: str) -> NoReturn:
        if tok.typ == TokenType.ERROR:
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
        nodes: list[Node] = []
        while self.peek().typ != TokenType.EOF:
            if self.peek().typ == TokenType.LEFT_DELIM:
                mark = self.i
                self.next()
                if self.next_non_space().typ == TokenType.DEFINE:
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
            self.errorf(f"template: multiple definition of template {quote(name)}")

    def sub_tree(self) -> tuple[ListNode, Node]:
        saved = (self.vars, self.range_depth)
        self.vars, self.range_depth = ["$"], 0
        try:
            return self.item_list()
        finally:
            self.vars, self.range_depth = saved

    def parse_definition(self) -> None:
        context = "define clause"
        tok = self.next_non_space()
        if tok.typ not in (TokenType.STRING, TokenType.RAW_STRING):
            self.unexpected(tok, context)
        name = self.unquote(tok.val)
        self.expect(TokenType.RIGHT_DELIM, context)
        root, end = self.sub_tree()
        if not isinstance(end, _EndNode):
            self.errorf(f"unexpected {end} in {context}")
        self.add_tree(name, root)

    def unquote(self, s: str) -> str:
        try:
            return unquote(s)
        except ValueError as e:
            self.errorf(str(e))

    def item_list(self) -> tuple[ListNode, Node]:
        pos = self.peek_non_space().pos
        nodes: list[Node] = []
        while self.peek_non_space().typ != TokenType.EOF:
            n = self.text_or_action()
            if isinstance(n, (_EndNode, _ElseNode)):
                return ListNode(pos=pos, nodes=tuple(nodes)), n
            nodes.append(n)
        self.errorf("unexpected EOF")

    def text_or_action(self) -> Node:
        tok = self.next_non_space()
        if tok.typ == TokenType.TEXT:
            return TextNode(pos=tok.pos, text=tok.val)
        if tok.typ == TokenType.LEFT_DELIM:
            saved = self.action_line
            self.action_line = tok.line
            try:
                return self.action()
            finally:
                self.action_line = saved
        self.unexpected(tok, "input")

    def action(self) -> Node:
        tok = self.next_non_space()
        t = tok.typ
        if t == TokenType.BLOCK:
            return self.block_control()
        if t in (TokenType.BREAK, TokenType.CONTINUE):
            word = "break" if t == TokenType.BREAK else "continue"
            after = self.next_non_space()
            if after.typ != TokenType.RIGHT_DELIM:
                self.unexpected(after, "{{" + word + "}}")
            if self.range_depth == 0:
                self.errorf(f"{{{{{word}}}}} outside {{{{range}}}}")
            if t == TokenType.BREAK:
                return BreakNode(pos=tok.pos)
            return ContinueNode(pos=tok.pos)
        if t == TokenType.ELSE:
            peek = self.peek_non_space()
            if peek.typ in (TokenType.IF, TokenType.WITH):
                return _ElseNode(pos=peek.pos)
            return _ElseNode(pos=self.expect(TokenType.RIGHT_DELIM, "else").pos)
        if t == TokenType.END:
            return _EndNode(pos=self.expect(TokenType.RIGHT_DELIM, "end").pos)
        if t == TokenType.IF:
            return self.control(IfNode, "if")
        if t == TokenType.RANGE:
            return self.control(RangeNode, "range")
        if t == TokenType.WITH:
            return self.control(WithNode, "with")
        if t == TokenType.TEMPLATE:
            return self.template_control()
        self.backup()
        tok = self.peek()
        return ActionNode(pos=tok.pos, line=tok.line,
                          pipe=self.pipeline("command", TokenType.RIGHT_DELIM))

    def control(self, cls: type[BranchNode], context: str) -> BranchNode:
        mark = len(self.vars)
        self.nest("max expression depth exceeded")
        try:
            pipe = self.pipeline(context, TokenType.RIGHT_DELIM)
            if context == "range":
                self.range_depth += 1
            lst, nxt = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list: ListNode | None = None
            if isinstance(nxt, _ElseNode):
                # "{{else if}}" / "{{else with}}" nest a control that shares our {{end}}.
                if context == "if" and self.peek().typ == TokenType.IF:
                    self.next()
                    else_list = ListNode(pos=nxt.pos, nodes=(self.control(IfNode, "if"),))
                elif context == "with" and self.peek().typ == TokenType.WITH:
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

    def template_name(self, tok: Token, context: str) -> str:
        if tok.typ not in (TokenType.STRING, TokenType.RAW_STRING):
            self.unexpected(tok, context)
        return self.unquote(tok.val)

    def template_control(self) -> TemplateNode:
        context = "template clause"
        tok = self.next_non_space()
        name = self.template_name(tok, context)
        pipe: PipeNode | None = None
        if self.next_non_space().typ != TokenType.RIGHT_DELIM:
            self.backup()
            pipe = self.pipeline(context, TokenType.RIGHT_DELIM)
        return TemplateNode(pos=tok.pos, line=tok.line, name=name, pipe=pipe)

    def block_control(self) -> TemplateNode:
        context = "block clause"
        tok = self.next_non_space()
        name = self.template_name(tok, context)
        pipe = self.pipeline(context, TokenType.RIGHT_DELIM)
        self.nest("max expression depth exceeded")
        outer_far = self.far
        root, end = self.sub_tree()
        self.depth -= 1
        if not isinstance(end, _EndNode):
            self.far = outer_far  # Go raises this from the enclosing tree's token state
            self.errorf(f"unexpected {end} in {context}")
        self.add_tree(name, root)
        return TemplateNode(pos=tok.pos, line=tok.line, name=name, pipe=pipe)

    def pipeline(self, context: str, end: TokenType) -> PipeNode:
        tok = self.peek_non_space()
        decl: list[VariableNode] = []
        is_assign = False
        while True:  # declarations: "$x :=", "$x =", "$i, $v :="
            v = self.peek_non_space()
            if v.typ != TokenType.VARIABLE:
                break
            mark = self.i
            self.next()
            nxt = self.peek_non_space()
            if nxt.typ in (TokenType.ASSIGN, TokenType.DECLARE):
                is_assign = nxt.typ == TokenType.ASSIGN
                self.next_non_space()
                decl.append(VariableNode(pos=v.pos, ident=(v.val,)))
                self.vars.append(v.val)
                break
            if nxt.typ == TokenType.CHAR and nxt.val == ",":
                self.next_non_space()
                decl.append(VariableNode(pos=v.pos, ident=(v.val,)))
                self.vars.append(v.val)
                if context == "range" and len(decl) < 2:
                    if self.peek_non_space().typ in (TokenType.VARIABLE, TokenType.RIGHT_DELIM,
                                                     TokenType.RIGHT_PAREN):
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
        args: list[Node] = []
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            t = self.next()
            if t.typ == TokenType.SPACE:
                continue
            if t.typ in (TokenType.RIGHT_DELIM, TokenType.RIGHT_PAREN):
                self.backup()
            elif t.typ != TokenType.PIPE:
                self.unexpected(t, "operand")
            break
        if not args:
            self.errorf("empty command")
        return CommandNode(pos=pos, args=tuple(args))

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == TokenType.FIELD:
            pos = self.peek().pos
            fields: list[str] = []
            while self.peek().typ == TokenType.FIELD:
                fields.append(self.next().val[1:])
            if isinstance(node, FieldNode):
                return FieldNode(pos=pos, ident=node.ident + tuple(fields))
            if isinstance(node, VariableNode):
                return VariableNode(pos=pos, ident=node.ident + tuple(fields))
            if isinstance(node, (BoolNode, StringNode, NumberNode, NilNode, DotNode)):
                self.errorf(f"unexpected . after term {quote(str(node))}")
            return ChainNode(pos=pos, node=node, fields=tuple(fields))
        return node

    def term(self) -> Node | None:
        tok = self.next_non_space()
        t = tok.typ
        if t == TokenType.IDENTIFIER:
            if tok.val not in _FUNC_NAMES:
                self.errorf(f"function {quote(tok.val)} not defined")
            return IdentifierNode(pos=tok.pos, name=tok.val)
        if t == TokenType.DOT:
            return DotNode(pos=tok.pos)
        if t == TokenType.NIL:
            return NilNode(pos=tok.pos)
        if t == TokenType.VARIABLE:
            if tok.val not in self.vars:
                self.errorf(f"undefined variable {quote(tok.val)}")
            return VariableNode(pos=tok.pos, ident=(tok.val,))
        if t == TokenType.FIELD:
            return FieldNode(pos=tok.pos, ident=(tok.val[1:],))
        if t == TokenType.BOOL:
            return BoolNode(pos=tok.pos, value=tok.val == "true")
        if t in (TokenType.CHAR_CONSTANT, TokenType.COMPLEX, TokenType.NUMBER):
            return self.number(tok)
        if t == TokenType.LEFT_PAREN:
            self.nest("max expression depth exceeded")
            pipe = self.pipeline("parenthesized pipeline", TokenType.RIGHT_PAREN)
            self.depth -= 1
            return pipe
        if t in (TokenType.STRING, TokenType.RAW_STRING):
            return StringNode(pos=tok.pos, quoted=tok.val, text=self.unquote(tok.val))
        self.backup()
        return None

    def number(self, tok: Token) -> NumberNode:
        text = tok.val
        if tok.typ == TokenType.CHAR_CONSTANT:
            try:
                r = unquote(text)
            except ValueError:
                self.errorf(f"malformed character constant: {text}")
            c = ord(r) if len(r) == 1 else 0xFFFD
            return NumberNode(pos=tok.pos, text=text, is_int=True, is_uint=True, is_float=True,
                              int_val=c, float_val=float(c))
        if tok.typ == TokenType.COMPLEX or text.endswith("i"):
            self.errorf(f"complex numbers are not supported: {text}")
        num = _parse_go_number(text)
        if num is None:
            self.errorf(f"illegal number syntax: {quote(text)}")
        if isinstance(num, str):
            self.errorf(num)
        is_int, is_uint, is_float, ival, fval = num
        return NumberNode(pos=tok.pos, text=text, is_int=is_int, is_uint=is_uint,
                          is_float=is_float, int_val=ival, float_val=fval)


def _parse_go_number(text: str) -> tuple[bool, bool, bool, int, float] | str | None:
    """Go parse.newNumber for int/float literals: (is_int, is_uint, is_float, int, float)."""
    is_int = is_uint = is_float = False
    ival, fval = 0, 0.0
    u = parse_uint(text)
    if u is not None and u <= UINT64_MAX:
        is_uint = True
    body = text[1:] if text[:1] in ("+", "-") else text
    m = parse_uint(body)
    n = None if m is None else (-m if text[:1] == "-" else m)
    if n is not None and INT64_MIN <= n <= INT64_MAX:
        is_int, ival = True, n
        if n == 0:
            is_uint = True
    if is_int:
        is_float, fval = True, float(ival)
    elif is_uint and u is not None:
        is_float, fval = True, float(u)
    else:
        f = parse_float(text)
        if f is not None:
            if not any(c in text for c in ".eEpP"):
                return f"integer overflow: {text}"
            is_float, fval = True, f
            if math.isfinite(f) and f == int(f):
                i = int(f)
                if INT64_MIN <= i <= INT64_MAX:
                    is_int, ival = True, i
                if 0 <= i <= UINT64_MAX:
                    is_uint = True
    if not (is_int or is_uint or is_float):
        return None
    return is_int, is_uint, is_float, ival, fval
