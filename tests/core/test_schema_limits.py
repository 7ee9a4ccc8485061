"""core/schema_limits: the bounds on schemas that become grammars (issue 9, resource limits).

Every refusal is a BadRequest naming the keyword and where it is; valid schemas pass as they
are. The walk itself has no recursion and does linear work, whatever the schema."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pollama.core import schema_limits as sl
from pollama.core.errors import BadRequest
from tests.schemas import PERSON

# The shape pydantic's model_json_schema() gives: $defs, $ref, a recursive model, allOf.
PYDANTIC = {
    "$defs": {
        "Node": {"type": "object", "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}},
        "Base": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}}},
    },
    "type": "object",
    "properties": {"root": {"$ref": "#/$defs/Node"},
                   "meta": {"allOf": [{"$ref": "#/$defs/Base"}]},
                   "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                            "maxItems": 2000},
                   "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{1,2000}$"},
                   "any": {}},
    "required": ["root"],
}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "required": ["city"],
                                          "properties": {"city": {"type": "string"}}}}}


def refused(schema: Any) -> str:
    with pytest.raises(BadRequest) as info:
        sl.check_format(schema)
    assert info.value.status_hint == 400
    return info.value.message


def nested(depth: int, leaf: Any = None) -> dict[str, Any]:
    node: dict[str, Any] = leaf or {"type": "string"}
    for _ in range(depth):
        node = {"anyOf": [node]}
    return node


@pytest.mark.parametrize("schema", [PERSON, PYDANTIC, {"type": "array", "items": {}},
                                    {"type": "string", "maxLength": 5_000_000},
                                    {"type": "array", "maxItems": 10**30},
                                    {"type": "string", "minLength": 2000},
                                    {"type": "integer", "maximum": 1e308},
                                    {"type": "integer", "minimum": float("-inf")},
                                    {"properties": {"minLength": {"type": "integer"},
                                                    "maxItems": {"type": "string"}}},
                                    {"enum": [[[[[1]]]]], "minLength": 3.0}])
def test_valid_schemas_pass_unchanged(schema: Any) -> None:
    before = copy.deepcopy(schema)
    sl.check_format(schema)
    assert schema == before


@pytest.mark.parametrize(("schema", "message"), [
    ({"type": "string", "minLength": 5_000_000},
     "invalid format: minLength 5000000 at the top level is over the limit of 2000 repetitions"),
    ({"type": "object", "properties": {"a": {"type": "array", "minItems": 2001}}},
     "invalid format: minItems 2001 at #/properties/a is over the limit of 2000 repetitions"),
    ({"type": "object", "minProperties": 10**9},
     "invalid format: minProperties 1000000000 at the top level is over the limit of 2000 "
     "repetitions"),
    ({"type": "string", "minLength": 5, "maxLength": 3},
     "invalid format: minLength 5 at the top level is greater than maxLength 3"),
    ({"type": "string", "maxLength": -1},
     "invalid format: maxLength at the top level must be a non-negative integer, not -1"),
    ({"type": "string", "minLength": 1.5},
     "invalid format: minLength at the top level must be a non-negative integer, not 1.5"),
    ({"type": "string", "pattern": "^a{2001}$"},
     "invalid format: the pattern at the top level repeats 2001 times, over the limit of 2000 "
     "repetitions"),
    ({"type": "string", "pattern": "^(ab){5,3}$"},
     "invalid format: the pattern at the top level has a repetition {5,3} whose minimum is "
     "greater than its maximum"),
    ({"type": "integer", "minimum": 1e30},
     "invalid format: the integer bounds at the top level are outside the 64-bit range"),
    ({"type": "integer", "minimum": float("inf")},  # JSON 1e400 decodes to infinity
     "invalid format: the integer bounds at the top level are outside the 64-bit range"),
    ({"type": "integer", "minimum": 5, "maximum": 4},
     "invalid format: the integer minimum at the top level is greater than its maximum"),
    ({"properties": {"a~/b": {"$ref": "#/$defs/missing"}}},
     'invalid format: $ref "#/$defs/missing" at #/properties/a~0~1b does not resolve: only '
     "references within the schema (#/...) are supported"),
    ({"items": {"$ref": "https://example.com/s.json"}},
     'invalid format: $ref "https://example.com/s.json" at #/items does not resolve: only '
     "references within the schema (#/...) are supported"),
    ({"properties": {"a": "string"}},
     "invalid format: the schema at #/properties/a must be an object, not a string"),
])
def test_refusals(schema: Any, message: str) -> None:
    assert refused(schema) == message


def test_repetition_threshold_is_llama_cpps() -> None:
    # llama.cpp src/llama-grammar.cpp: #define MAX_REPETITION_THRESHOLD 2000
    assert sl.MAX_REPETITION == 2000
    sl.check_format({"type": "string", "minLength": 2000, "pattern": "^a{2000,}$"})
    refused({"type": "string", "minLength": 2001})


def test_nesting_depth() -> None:
    sl.check_format(nested(49))  # 99 JSON levels
    assert refused(nested(300)) == (
        "invalid format: the schema is nested more than 100 levels deep "
        "(at #/anyOf/0/anyOf/0/anyOf/0/anyOf/0...)")
    # data nested inside a schema counts too (it is encoded and decoded on its way)
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    assert "nested more than 100 levels" in refused({"enum": [deep]})
    # 100 000 levels: no RecursionError, the walk has no recursion
    assert "nested more than" in refused(nested(100_000))


def test_properties_per_object() -> None:
    many = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(501)}}
    assert refused(many) == ("invalid format: the object at the top level has 501 properties, "
                             "over the limit of 500")
    del many["properties"]["p0"]
    sl.check_format(many)


def test_allof_billion_laughs_is_refused() -> None:
    """Each definition's property copies the next one twice through allOf: the converter's work
    doubles per link (2^40 here), the walk's stays linear."""
    defs: dict[str, Any] = {"L40": {"properties": {"x": {"type": "string", "maxLength": 9}}}}
    for i in range(40):
        ref = {"$ref": f"#/$defs/L{i + 1}"}
        defs[f"L{i}"] = {"properties": {"x": {"allOf": [ref, ref]}}}
    schema = {"$defs": defs, "allOf": [{"$ref": "#/$defs/L0"}]}
    assert refused(schema) == (
        "invalid format: the schema is too large for a grammar: its subschemas (with $ref and "
        "allOf followed), repetitions and enum values count more than 200000")


def test_ref_targets_count_once() -> None:
    """$ref is converted once per definition (the converter names a rule for it), so a large
    definition referenced many times is not multiplied."""
    big = {"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": 2000}
                                            for i in range(60)}}
    schema = {"$defs": {"Big": big}, "type": "array",
              "prefixItems": [{"$ref": "#/$defs/Big"}] * 400}
    sl.check_format(schema)
    # inlined, the same definitions are too much
    assert "too large" in refused({"type": "array", "prefixItems": [big] * 400})


def test_recursive_allof_is_refused_recursive_ref_is_not() -> None:
    loop = {"$defs": {"A": {"properties": {"x": {"allOf": [{"$ref": "#/$defs/A"}]}}}},
            "allOf": [{"$ref": "#/$defs/A"}]}
    assert refused(loop) == ("invalid format: allOf at #/$defs/A/properties/x includes itself: "
                             "a recursive allOf cannot become a grammar")
    tree = {"$defs": {"T": {"properties": {"kids": {"items": {"$ref": "#/$defs/T"}}}}},
            "$ref": "#/$defs/T"}
    sl.check_format(tree)


def test_tools_share_one_budget_and_stay_lenient() -> None:
    sl.check_tools([WEATHER, {"type": "function"}, "junk", {"function": {"parameters": 3}}])
    # what the converter merely cannot handle is left to the runner (no grammar, as before)
    sl.check_tools([{"function": {"name": "f", "parameters": {
        "properties": {"a": "string", "b": {"$ref": "#/nowhere"}, "c": {"minLength": "3"}}}}}])
    bad = {"type": "function", "function": {"name": 'say "hi"', "parameters": {
        "type": "object", "properties": {"xs": {"type": "array", "minItems": 10**6}}}}}
    with pytest.raises(BadRequest) as info:
        sl.check_tools([WEATHER, bad])
    assert info.value.message == ('invalid parameters for tool "say \\"hi\\"": minItems 1000000 '
                                  "at #/properties/xs is over the limit of 2000 repetitions")
    tool = {"function": {"name": "t", "parameters": {"type": "object", "properties": {
        f"p{i}": {"type": "string", "maxLength": 2000} for i in range(40)}}}}
    sl.check_tools([tool] * 2)
    with pytest.raises(BadRequest, match="too large for a grammar"):
        sl.check_tools([tool] * 3)


@pytest.mark.parametrize(("pattern", "counts"), [
    ("^a{3}b{2,}c{0,5}$", [(3, 3), (2, None), (0, 5)]),
    (r"^\{9999\}[{]{1}$", [(1, 1)]),  # escaped and bracketed braces are literals
    ("^a{ 7 , 8 }$", [(7, 8)]),
    ("^a{x}b{1,2,3}c{", []),  # what the converter refuses itself
])
def test_pattern_repetitions(pattern: str, counts: list[tuple[int, int | None]]) -> None:
    assert list(sl.pattern_repetitions(pattern)) == counts


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=False)
    | st.text(max_size=8) | st.sampled_from(["^a{9999}$", "#/$defs/a", "#/properties"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "properties", "items", "anyOf", "allOf", "$ref", "$defs", "a",
                         "minLength", "maxItems", "pattern", "enum", "minimum", "prefixItems",
                         "additionalProperties", "not"]), inner, max_size=5),
    max_leaves=30)


@settings(max_examples=400)
@given(JSON)
def test_any_value_is_checked_or_refused_in_plain_words(schema: Any) -> None:
    for check in (sl.check_format, lambda s: sl.check_tools([{"function": {"parameters": s}}])):
        try:
            check(schema)
        except BadRequest as exc:
            assert not re.search(r"[A-Z][a-z]+(Error|Exception)\b", exc.message), exc.message


def test_messages_name_no_python_exception() -> None:
    for schema in (nested(300), {"minLength": 10**40}, {"$ref": 3}, json.loads("[1]")):
        try:
            sl.check_format(schema)
        except BadRequest as exc:
            assert "Error" not in exc.message
