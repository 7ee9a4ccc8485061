"""The runner's schema-to-grammar step on the real llama-cpp-python and SmolLM2's vocabulary:
every grammar it builds is one llama.cpp's parser accepts (a refused grammar made
llama-cpp-python crash the runner on a null sampler), repetitions follow llama.cpp's threshold,
and failures are 400s in plain words (defence in depth behind core.schema_limits)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pollama.core.errors import PollamaError
from pollama.runners import llama_runner as lr

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def llm(smollm2_gguf: str) -> Iterator[Any]:
    import llama_cpp

    model = llama_cpp.Llama(model_path=smollm2_gguf, n_ctx=256, verbose=False)
    yield model
    model.close()


def sample(llm: Any, fmt: Any, prompt: str = "Give me JSON", n: int = 40) -> str:
    grammar = lr.grammar_for(fmt, llm._model.vocab)
    tokens = llm.tokenize(f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
                          .encode(), add_bos=True, special=True)
    out = []
    for tok in llm.generate(tokens, grammar=grammar, temp=0.0, top_k=1, reset=True):
        if tok == llm.token_eos() or len(out) >= n:
            break
        out.append(tok)
    return llm.detokenize(out).decode("utf-8", "replace")


@pytest.mark.parametrize("schema", [
    {"type": "string", "maxLength": 2000},  # the library's converter nested 2000 groups
    {"type": "string", "minLength": 3, "maxLength": 1500},
    {"type": "string", "maxLength": 5_000_000},  # over the threshold: unbounded, as llama.cpp
    {"type": "array", "items": {"type": "integer"}, "maxItems": 2000},
    {"type": "object", "properties": {"names": {"type": "array", "maxItems": 1999,
                                                "items": {"type": "string", "maxLength": 1999}}}},
    {"type": "string", "pattern": "^a{0,1500}b{2}$"},
    {"type": "array", "items": {}},
    {"type": "array", "items": {}, "minItems": 1, "maxItems": 3},
])
def test_grammars_are_accepted_by_llama_cpp(llm: Any, schema: Any) -> None:
    text = lr.json_schema_to_gbnf(json.dumps(schema))
    assert lr._parses(text, llm._model.vocab), text[:500]


NUMBERS = "Give a JSON array of the numbers 1, 2 and 3"  # SmolLM2 answers ["1", "2", "3"]


def test_items_any_gives_json_arrays(llm: Any) -> None:
    """``items: {}`` was a 400 ``KeyError: 'prefixItems'``: it is any JSON value."""
    assert json.loads(sample(llm, {"type": "array", "items": {}}, NUMBERS)) == ["1", "2", "3"]


def test_bounded_array_of_anything(llm: Any) -> None:
    """maxItems 2 stops the model after two of the three items it writes unconstrained."""
    fmt = {"type": "array", "items": {}, "maxItems": 2}
    assert json.loads(sample(llm, fmt, NUMBERS)) == ["1", "2"]


def test_string_length_is_enforced(llm: Any) -> None:
    out = sample(llm, {"type": "string", "minLength": 5, "maxLength": 8})
    assert 5 <= len(json.loads(out, strict=False)) <= 8  # the char rule admits raw newlines


def deep(n: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(n):
        node = {"anyOf": [node]}
    return node


@pytest.mark.parametrize(("fmt", "message"), [
    (deep(300), "invalid format: the schema is nested more than 100 levels deep"),
    ({"type": "string", "minLength": 5_000_000},
     "invalid format: minLength 5000000 at the top level is over the limit of 2000"),
    ({"type": "nonsense"}, "invalid format: Unrecognized schema"),
    ({"type": "array", "items": False}, "invalid format: a false schema admits no value"),
    # llama.cpp's own threshold counts a group's rules times its repetition
    ({"type": "string", "pattern": "^(a{0,1500}b{0,1500})?$"},
     "invalid format: llama.cpp refused the grammar"),
])
def test_refusals_are_400_in_plain_words(llm: Any, fmt: Any, message: str) -> None:
    with pytest.raises(PollamaError) as info:
        lr.grammar_for(fmt, llm._model.vocab)
    assert info.value.status_hint == 400
    assert info.value.message.startswith(message)
    assert not re.search(r"\b[A-Z][a-zA-Z]*(Error|Exception)\b|KeyError", info.value.message)


def test_converter_failures_are_mapped() -> None:
    assert lr._schema_error(RecursionError("maximum recursion depth exceeded")).message == \
        "invalid format: the schema is nested too deeply to become a grammar"
    assert lr._schema_error(KeyError("prefixItems")).message == \
        "invalid format: the JSON schema could not be converted to a grammar"
    assert lr._schema_error(MemoryError(), "tool parameters").message == \
        "invalid tool parameters: the schema is too large to become a grammar"


def test_grammar_size_is_bounded() -> None:
    """Within core's budget but a huge grammar text (a long enum): the runner's own bound."""
    big = {"enum": ["x" * 1000 + str(i) for i in range(3000)]}
    with pytest.raises(PollamaError, match="grammar would be over 2097152 bytes"):
        lr.json_schema_to_gbnf(json.dumps(big))


def test_tool_limits_are_400_other_tool_failures_fall_back(llm: Any) -> None:
    fmt = {"prefix": "<tool_call>", "suffix": "</tool_call>", "name_key": "name",
           "arguments_key": "arguments", "array": False}
    huge = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "array", "minItems": 10**6}}}}}]
    with pytest.raises(PollamaError) as info:
        lr.tool_grammar(huge, fmt, vocab=llm._model.vocab)
    assert info.value.status_hint == 400
    odd = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "nonsense"}}}}}]
    assert lr.tool_grammar(odd, fmt, vocab=llm._model.vocab) is None
    long = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string", "maxLength": 1800}}}}}]
    assert lr.tool_grammar(long, fmt, vocab=llm._model.vocab) is not None


SCHEMA_PARTS = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 3000) | st.sampled_from(
        ["string", "integer", "array", "object", "number", "^a{2,5}$", "^[a-z]+$", "#/$defs/d",
         "date", "uuid", 1e308, 0.5]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["type", "properties", "items", "anyOf", "oneOf", "allOf", "$ref", "$defs", "d",
         "required", "minLength", "maxLength", "minItems", "maxItems", "pattern", "enum",
         "const", "minimum", "maximum", "prefixItems", "additionalProperties", "format"]),
        inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(SCHEMA_PARTS.filter(lambda v: isinstance(v, dict) and v))
def test_any_schema_gives_a_parsed_grammar_or_a_400(llm: Any, schema: Any) -> None:
    """Whatever the schema, the runner either builds a grammar llama.cpp accepts or refuses
    with a 400 in plain words; it never raises anything else (which was a 500)."""
    try:
        grammar = lr.grammar_for(schema, llm._model.vocab)
    except PollamaError as exc:
        assert exc.status_hint == 400, exc.message
        assert exc.message.startswith("invalid format: ")
        assert not re.search(r"\b[A-Z][a-zA-Z]*(Error|Exception)\b", exc.message), exc.message
        return
    assert lr._parses(grammar._grammar, llm._model.vocab)
