"""Bounds on the JSON schemas that become llama.cpp grammars (``format``, tool ``parameters``).

Theory of operation. The runner turns a schema into GBNF (llama-cpp-python's converter plus
core.json_grammar) and llama.cpp expands that grammar into rules. A small request can make either
stage work without bound:

- a repetition count (``minLength``, ``maxItems``, a ``{m,n}`` in a ``pattern``) becomes that many
  grammar elements; llama.cpp's own grammar parser refuses a minimum above 2000
  (``MAX_REPETITION_THRESHOLD`` in src/llama-grammar.cpp: "number of repetitions exceeds sane
  defaults") and leaves a maximum above 2000 unbounded, and so do we;
- ``allOf`` copies the properties of what it references, so definitions that each reference the
  next twice double the work per link (a billion laughs through ``$ref``); ``$ref`` itself is
  converted once per definition;
- a deeply nested schema exhausts Python's recursion in the converter and in the runner
  protocol's encoder.

``check_format`` and ``check_tools`` walk a schema without recursion, model the converter's work
(subschemas visited with ``allOf`` copies, repetitions, enum values, properties) against a budget
and raise ``BadRequest`` naming the keyword and where it is (a JSON pointer), so the API refuses
the request with a 400 before any runner is used. The runner runs the same check again and bounds
the grammar text it builds (defence in depth). Valid schemas within the bounds are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from . import json_grammar
from .errors import BadRequest

__all__ = [
    "MAX_DEPTH", "MAX_GRAMMAR_BYTES", "MAX_PROPERTIES", "MAX_REPETITION", "MAX_SIZE",
    "check_format", "check_tools", "count", "pattern_repetitions", "pointer"
]

MAX_REPETITION = 2000  # llama.cpp src/llama-grammar.cpp MAX_REPETITION_THRESHOLD
MAX_DEPTH = 100  # JSON nesting levels of one schema (about 50 levels of subschemas)
MAX_PROPERTIES = 500  # per object: the converter chains optional properties recursively
MAX_SIZE = 200_000  # grammar elements: subschemas (allOf copies counted), repetitions, enums
MAX_GRAMMAR_BYTES = 2 * 1024 * 1024  # the GBNF text the runner may build (checked there)

_PAIRS = (("minLength", "maxLength"), ("minItems", "maxItems"),
          ("minProperties", "maxProperties"))
# Keywords whose value is one subschema, a list of them, or a map of names to them.
_ONE = ("additionalProperties", "additionalItems", "not", "if", "then", "else", "contains",
        "propertyNames", "unevaluatedProperties", "unevaluatedItems")
_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_Path = Any  # a place in the schema as a linked list: (parent, key), None at the top


def check_format(schema: Any) -> None:
    """Raise ``BadRequest("invalid format: ...")`` when the ``format`` schema exceeds a bound
    or cannot become a grammar (a subschema that is not an object, an unresolved ``$ref``)."""
    if isinstance(schema, Mapping):
        _Walk("invalid format: ", strict=True).run(schema)


def check_tools(tools: Sequence[Any]) -> None:
    """Raise ``BadRequest`` when a tool's ``parameters`` schema exceeds a bound; the tools share
    one budget, since the runner builds one grammar for all of them. Schemas the converter
    merely cannot handle are left alone: the runner then generates without a grammar."""
    size = 0
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        params = fn.get("parameters") if isinstance(fn, Mapping) else None
        if isinstance(params, Mapping):
            name = fn.get("name") if isinstance(fn, Mapping) else None
            walk = _Walk(f"invalid parameters for tool {_quote(name)}: ", strict=False,
                         spent=size)
            size = walk.run(params)


def _quote(name: Any) -> str:
    return '"' + str(name).replace("\\", "\\\\").replace('"', '\\"') + '"'


def pointer(path: Sequence[str | int]) -> str:
    """``path`` as a JSON pointer fragment (RFC 6901), e.g. ``#/properties/a~1b``."""
    return "#" + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _at(path: Sequence[str | int]) -> str:
    return f"at {pointer(path)}" if path else "at the top level"


def count(value: Any) -> int | None:
    """A repetition count as JSON schema allows it: a non-negative integer (``3.0`` is one);
    None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (value.is_integer() and value >= 0):
        return None
    return int(value) if value >= 0 else None


def pattern_repetitions(pattern: str) -> Iterator[tuple[int, int | None]]:
    """The ``{m}``, ``{m,}``, ``{m,n}`` quantifiers of a regular expression as the converter
    reads them (llama-cpp-python's ``_visit_pattern``): escapes and ``[...]`` classes skipped,
    the text between braces split at commas and read with ``int``. Quantifiers it cannot read
    are skipped: the converter refuses those itself. ``(min, None)`` means no maximum."""
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
        elif c == "[":
            i += 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            i += 1
        elif c == "{":
            end = pattern.find("}", i + 1)
            if end < 0:
                return
            nums = [s.strip() for s in pattern[i + 1:end].split(",")]
            i = end + 1
            try:
                if len(nums) == 1:
                    yield int(nums[0]), int(nums[0])
                elif len(nums) == 2:
                    yield (int(nums[0]) if nums[0] else 0), (int(nums[1]) if nums[1] else None)
            except ValueError:
                continue
        else:
            i += 1


class _Walk:
    """One schema's check. ``strict`` (``format``) also refuses what the converter would fail
    on; ``spent`` carries the budget used by earlier schemas of the same grammar."""

    def __init__(self, prefix: str, *, strict: bool, spent: int = 0) -> None:
        self.prefix = prefix
        self.strict = strict
        self.spent = spent
        self.root: Mapping[str, Any] = {}
        self.paths: dict[int, _Path] = {}  # id(subschema) -> where it was first seen

    def fail(self, message: str) -> BadRequest:
        return BadRequest(self.prefix + message)

    def run(self, root: Mapping[str, Any]) -> int:
        self.root = root
        self._structure(root)
        return self._size(root)

    # -- pass 1: nesting, keywords ----------------------------------------------------------
    def _structure(self, root: Mapping[str, Any]) -> None:
        """Depth of the whole value (enum and default values included) and the keywords of
        every subschema, without recursion. Paths are linked (parent, key) pairs, so each node
        costs the same whatever its depth."""
        stack: list[tuple[Any, _Path, int, bool]] = [(root, None, 1, True)]
        while stack:
            node, link, depth, is_schema = stack.pop()
            if depth > MAX_DEPTH:
                raise self.fail(f"the schema is nested more than {MAX_DEPTH} levels deep "
                                f"({_at(_unlink(link)[:8])}...)")
            if is_schema:
                self.paths.setdefault(id(node), link)
                if isinstance(node, Mapping):
                    self._keywords(node, _unlink(link))
                elif self.strict and not isinstance(node, bool):
                    raise self.fail(f"the schema {_at(_unlink(link))} must be an object, "
                                    f"not {_kind(node)}")
            if isinstance(node, Mapping):
                for key, value in node.items():
                    subs = _subschemas(key, value) if is_schema else None
                    if subs is not None:
                        for keys, sub in subs:
                            sub_link: _Path = link
                            for k in keys:
                                sub_link = (sub_link, k)
                            stack.append((sub, sub_link, depth + len(keys), True))
                    elif isinstance(value, (Mapping, list)):
                        stack.append((value, (link, key), depth + 1, False))
            elif isinstance(node, list):
                for i, value in enumerate(node):
                    if isinstance(value, (Mapping, list)):
                        stack.append((value, (link, i), depth + 1, False))

    def _keywords(self, node: Mapping[str, Any], path: tuple[str | int, ...]) -> None:
        for lo_key, hi_key in _PAIRS:
            lo = self._count(node, lo_key, path)
            hi = self._count(node, hi_key, path)
            if lo is not None and lo > MAX_REPETITION:
                raise self.fail(f"{lo_key} {lo} {_at(path)} is over the limit of "
                                f"{MAX_REPETITION} repetitions")
            if lo is not None and hi is not None and lo > hi:
                raise self.fail(f"{lo_key} {lo} {_at(path)} is greater than "
                                f"{hi_key} {hi}")
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            for lo, hi in pattern_repetitions(pattern):
                if lo < 0 or (hi is not None and hi < 0):
                    raise self.fail(f"the pattern {_at(path)} has a negative "
                                    "repetition count")
                if lo > MAX_REPETITION:
                    raise self.fail(f"the pattern {_at(path)} repeats {lo} times, over "
                                    f"the limit of {MAX_REPETITION} repetitions")
                if hi is not None and lo > hi:
                    raise self.fail(f"the pattern {_at(path)} has a repetition "
                                    f"{{{lo},{hi}}} whose minimum is greater than its maximum")
        props = node.get("properties")
        if isinstance(props, Mapping) and len(props) > MAX_PROPERTIES:
            raise self.fail(f"the object {_at(path)} has {len(props)} properties, over "
                            f"the limit of {MAX_PROPERTIES}")
        if _is_integer(node):
            bounds = json_grammar.integer_bounds(node)
            if bounds is not None:
                lo, hi = bounds
                if (lo is not None and lo > json_grammar.INT64_MAX) or (
                        hi is not None and hi < json_grammar.INT64_MIN):
                    raise self.fail(f"the integer bounds {_at(path)} are outside the "
                                    "64-bit range")
                if lo is not None and hi is not None and lo > hi:
                    raise self.fail(f"the integer minimum {_at(path)} is greater than "
                                    "its maximum")
        ref = node.get("$ref")
        if ref is not None and self.strict and self._resolve(ref) is None:
            raise self.fail(f"$ref {_show(ref)} {_at(path)} does not resolve: only "
                            "references within the schema (#/...) are supported")

    def _count(self, node: Mapping[str, Any], key: str, path: tuple[str | int, ...]
               ) -> int | None:
        if key not in node or node[key] is None:
            return None
        n = count(node[key])
        if n is None and self.strict:
            raise self.fail(f"{key} {_at(path)} must be a non-negative integer, not "
                            f"{_show(node[key])}")
        return n

    def _resolve(self, ref: Any) -> Any:
        """The subschema a local ``$ref`` names (as the converter walks it), or None."""
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return None
        target: Any = self.root
        for part in ref[2:].split("/"):
            if not isinstance(target, Mapping) or part not in target:
                return None
            target = target[part]
        return target

    # -- pass 2: the converter's work -------------------------------------------------------
    def _size(self, root: Mapping[str, Any]) -> int:
        """Grammar elements the converter builds: each subschema visit, its repetitions, enum
        values and properties. ``$ref`` targets are converted once; ``allOf`` copies the
        properties of each component (and of a component's ``anyOf`` alternatives), so the
        same subschema may count several times. Computed once per subschema (memoised) on an
        explicit stack, saturating just above the budget."""
        memo: dict[int, int] = {}
        active: set[int] = set()
        refs: list[Any] = []
        seen_refs: set[int] = set()
        total = self.spent
        pending: list[Any] = [root]
        while pending:
            start = pending.pop()
            stack: list[tuple[Any, bool]] = [(start, False)]
            while stack:
                node, done = stack.pop()
                key = id(node)
                if done:
                    active.discard(key)
                    size = self._own(node)
                    for child in self._children(node, refs):
                        size += memo[id(child)]
                    memo[key] = min(size, MAX_SIZE + 1)
                    continue
                if key in memo:
                    continue
                active.add(key)
                stack.append((node, True))
                for child in self._children(node, []):
                    if id(child) in active:
                        where = _at(_unlink(self.paths.get(id(node))))
                        raise self.fail(f"allOf {where} includes itself: a recursive "
                                        "allOf cannot become a grammar")
                    if id(child) not in memo:
                        stack.append((child, False))
            total = min(total + memo[id(start)], MAX_SIZE + 1)
            if total > MAX_SIZE:
                raise self.fail(
                    "the schema is too large for a grammar: its subschemas (with $ref and allOf "
                    f"followed), repetitions and enum values count more than {MAX_SIZE}")
            for target in refs:
                if id(target) not in seen_refs:
                    seen_refs.add(id(target))
                    pending.append(target)
            refs = []
        return total

    def _own(self, node: Any) -> int:
        if not isinstance(node, Mapping):
            return 1
        size = 1
        for lo_key, hi_key in _PAIRS:
            lo, hi = count(node.get(lo_key)), count(node.get(hi_key))
            size += lo or 0
            if hi is not None and hi <= MAX_REPETITION:
                size += hi
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            size += len(pattern)
            for lo, hi in pattern_repetitions(pattern):
                size += max(lo, 0) + (hi if hi is not None and 0 <= hi <= MAX_REPETITION else 0)
        for key in ("enum", "properties"):
            value = node.get(key)
            if isinstance(value, (list, Mapping)):
                size += len(value)
        return size

    def _children(self, node: Any, refs: list[Any]) -> list[Any]:
        """The subschemas the converter visits from ``node``; ``$ref`` targets go to ``refs``
        (converted once, elsewhere)."""
        if not isinstance(node, Mapping):
            return []
        out: list[Any] = []
        ref = node.get("$ref")
        if ref is not None:
            target = self._resolve(ref)
            if target is not None:
                refs.append(target)
            return out
        for key in ("properties",):
            value = node.get(key)
            if isinstance(value, Mapping):
                out.extend(value.values())
        for key in ("additionalProperties", "items"):
            value = node.get(key)
            if isinstance(value, Mapping):
                out.append(value)
            elif key == "items" and isinstance(value, list):
                out.extend(value)
        for key in ("anyOf", "oneOf", "prefixItems"):
            value = node.get(key)
            if isinstance(value, list):
                out.extend(value)
        parts = node.get("allOf")
        if isinstance(parts, list):
            for part in parts:
                alternatives = part.get("anyOf") if isinstance(part, Mapping) else None
                for comp in alternatives if isinstance(alternatives, list) else [part]:
                    if isinstance(comp, Mapping) and "$ref" in comp:
                        comp = self._resolve(comp["$ref"])
                    props = comp.get("properties") if isinstance(comp, Mapping) else None
                    if isinstance(props, Mapping):
                        out.extend(props.values())
        return [c for c in out if isinstance(c, (Mapping, bool))]


def _unlink(link: _Path) -> tuple[str | int, ...]:
    keys: list[str | int] = []
    while link is not None:
        link, key = link
        keys.append(key)
    return tuple(reversed(keys))


def _subschemas(key: str, value: Any) -> list[tuple[tuple[str | int, ...], Any]] | None:
    """The subschemas under keyword ``key`` with their relative paths, or None when ``key``
    holds no subschemas in this shape (the value is then plain data, such as an enum)."""
    if key in _MAP and isinstance(value, Mapping):
        return [((key, name), sub) for name, sub in value.items()]
    if (key in _LIST or key == "items") and isinstance(value, list):
        return [((key, i), sub) for i, sub in enumerate(value)]
    if key in _ONE or key == "items":
        return [((key,), value)]
    return None


def _is_integer(node: Mapping[str, Any]) -> bool:
    return node.get("type") == "integer"


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return "a number"


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else '"' + value + '"'
    return text if len(text) <= 40 else text[:37] + "..."
