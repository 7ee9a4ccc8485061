"""Go ``text/template`` for Modelfile TEMPLATEs, and Ollama's prompt rendering on top of it.

Theory of operation. ``parse(text)`` runs a port of Go's ``text/template/parse`` (lexer with
``{{-``/``-}}`` trimming, recursive-descent parser with Go's error messages) and then applies
Ollama's ``template.Parse`` touch-up: when the template mentions neither ``.Messages`` nor
``.Response``, an ``{{ .Response }}`` action is appended. ``Template.execute(data)`` walks the
tree like Go's ``exec.go`` with ``missingkey=zero``: Python ``None`` stands for Go's nil
interface/invalid value (printed as ``<no value>``), ``dict`` for ``map[string]interface{}``
(ranged and printed in sorted key order), ``list``/``tuple`` for slices, and ``GoStruct``
subclasses for the structs Ollama hands to templates (Ollama ``template.Execute``). Values
print with a port of Go's ``fmt`` (``%v``, ``printf`` verbs) and ``json`` marshals like
``encoding/json``.

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

The modules follow Go's files, each importing only those above it (``funcs`` names ``exec``'s
``State`` in annotations only):

=============  ==============================================================================
``strconv``    Go string literals, number literal syntax, float formatting (``strconv``)
``lex``        tokens (``text/template/parse/lex.go``)
``parse``      nodes and parser (``parse/node.go``, ``parse/parse.go``)
``values``     how Python values stand for Go values (``GoStruct``, slices, truth, ``%T``)
``gojson``     ``encoding/json`` ``Marshal``
``fmt``        ``fmt.Sprint``/``Sprintf`` and how an action prints a value
``api``        the data Ollama passes to templates (Ollama ``api`` types)
``funcs``      builtin and Ollama functions (``text/template/funcs.go``, Ollama's ``FuncMap``)
``exec``       execution state and tree walk (``text/template/exec.go``)
``template``   Ollama's ``template`` package: ``parse``, ``render_chat``, ``render_suffix``
=============  ==============================================================================
"""

from __future__ import annotations

from ..errors import TemplateError
from .api import (
    PropertyType, TemplateMessage, Tool, ToolCall, ToolCallArguments, ToolCallFunction,
    ToolFunction, ToolFunctionParameters, ToolProperties, ToolProperty, Tools, template_messages,
    template_tools,
)
from .exec import MAX_OUTPUT, MAX_STEPS
from .fmt import go_sprint, go_sprintf, go_sprintln
from .gojson import go_json
from .parse import (
    MAX_DEPTH, ActionNode, BoolNode, BranchNode, BreakNode, ChainNode, CommandNode, ContinueNode,
    DotNode, FieldNode, IdentifierNode, IfNode, ListNode, NilNode, Node, NumberNode, PipeNode,
    RangeNode, StringNode, TemplateNode, TextNode, VariableNode, WithNode,
)
from .template import Template, parse, parse_go, render_chat, render_suffix, uses
from .values import GoStruct

# ``gotemplate.parse`` is the function above: the ``parse`` submodule is loaded (by ``template``)
# before the name is bound here, so the import system never rebinds it to the module.

__all__ = [
    # limits and errors
    "MAX_OUTPUT", "MAX_STEPS", "MAX_DEPTH", "TemplateError",
    # parsing and rendering (Ollama's template package)
    "Template", "parse", "parse_go", "uses", "render_chat", "render_suffix",
    # the data Ollama gives templates
    "GoStruct", "TemplateMessage", "ToolCall", "ToolCallFunction", "ToolCallArguments", "Tools",
    "Tool", "ToolFunction", "ToolFunctionParameters", "ToolProperties", "ToolProperty",
    "PropertyType", "template_messages", "template_tools",
    # Go's fmt and encoding/json
    "go_sprint", "go_sprintln", "go_sprintf", "go_json",
    # the parse tree (Go's parse.Node types)
    "Node", "TextNode", "ListNode", "FieldNode", "VariableNode", "IdentifierNode", "DotNode",
    "NilNode", "BoolNode", "NumberNode", "StringNode", "CommandNode", "PipeNode", "ChainNode",
    "ActionNode", "BranchNode", "IfNode", "RangeNode", "WithNode", "BreakNode", "ContinueNode",
    "TemplateNode",
]
