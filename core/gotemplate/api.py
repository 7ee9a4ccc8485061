"""The data Ollama gives templates: Go's ``api`` types as templates see them (Ollama
``api/types.go``; ``template/template.go`` builds them). Field names are Go's.

Tool calls' arguments and the tool list print as JSON (they have a ``String()`` method in
Ollama); so do a tool, its function and its parameters (``api.Tool`` / ``ToolFunction`` /
``ToolFunctionParameters`` ``String()``). JSON numbers are float64 in Go, so numbers inside
arguments and schemas become floats.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ..requests import Message
from .fmt import go_sprint
from .gojson import go_json, json_string
from .values import GoStruct, sorted_keys

__all__ = [
    "ToolCallArguments", "PropertyType", "ToolProperty", "ToolProperties",
    "ToolFunctionParameters", "ToolFunction", "Tool", "Tools", "ToolCallFunction", "ToolCall",
    "TemplateMessage", "template_messages", "template_tools",
]


def _go_any(v: object) -> Any:
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


def _as_str(v: object) -> str:
    return v if isinstance(v, str) else ""


def _as_int(v: object) -> int:
    if isinstance(v, bool):
        return 0
    if isinstance(v, int):
        return v
    if isinstance(v, float) and math.isfinite(v):
        return int(v)
    return 0


def _as_map(v: object) -> Mapping[str, Any]:
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
            json_string(k) + ":" + go_json(self[k]) for k in sorted_keys(self)) + "}"


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
            return json_string(self[0])
        return "[" + ",".join(json_string(t) for t in self) + "]"


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
    def from_json(cls, v: object, depth: int = 0) -> ToolProperty:
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
    def from_json(cls, v: object, *, ordered: bool = False, depth: int = 0) -> ToolProperties:
        if not isinstance(v, Mapping):
            return cls(None, ordered=ordered)
        return cls({str(k): ToolProperty.from_json(x, depth) for k, x in v.items()},
                   ordered=ordered)

    def go_string(self) -> str:
        return "{}" if self.nil else self.go_marshal_json()

    def go_marshal_json(self) -> str:
        if self.nil:
            return "null"
        keys = list(self) if self.go_ordered else sorted_keys(self)
        return "{" + ",".join(json_string(k) + ":" + go_json(self[k]) for k in keys) + "}"


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
    def from_json(cls, v: object) -> Tool:
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
    def from_json(cls, v: object) -> ToolCall:
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


def template_tools(tools: Sequence[Mapping[str, object]]) -> Tools:
    return Tools(Tool.from_json(t) for t in tools)
