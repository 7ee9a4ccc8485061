from __future__ import annotations

import itertools
import json
import pathlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pollama.core import chat_template, gotemplate
from pollama.core import tools as T
from pollama.core.requests import Message
from tests.templates import QWEN25_GO, QWEN25_JINJA  # Hermes style: <tool_call>{json}</tool_call>

DATA = pathlib.Path(__file__).parent / "data" / "ollama-templates"

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather",
    "parameters": {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}}}}
NOW = {"type": "function", "function": {"name": "now", "parameters": {
    "type": "object", "properties": {}}}}
TOOLS = [WEATHER, NOW]
NAMES = ("get_weather", "now")

HERMES = T.ToolFormat("<tool_call>", "</tool_call>")
MISTRAL = T.ToolFormat("[TOOL_CALLS]", "", array=True)
COMMAND_R = T.ToolFormat("Action: ```json", "```", "tool_name", "parameters", True)
FORMATS = [T.ToolFormat(), HERMES, MISTRAL, COMMAND_R]

# Llama 3.1 style: a bare JSON object with "parameters", no prefix.
LLAMA31_JINJA = """\
{{- bos_token }}
{%- for message in messages %}
{%- if message.tool_calls %}
{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
{%- set tool_call = message.tool_calls[0].function %}
{{- '{"name": "' + tool_call.name + '", ' }}{{- '"parameters": ' }}\
{{- tool_call.arguments | tojson }}{{- "}" }}
{{- "<|eot_id|>" }}
{%- else %}
{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + message.content + \
'<|eot_id|>' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\
{%- endif %}
"""

# Mistral style: [TOOL_CALLS] then a JSON array; ids must be 9 characters.
MISTRAL_JINJA = """\
{{- bos_token }}
{%- for message in messages %}
{%- if message.role == 'user' %}{{- '[INST] ' + message.content + '[/INST]' }}
{%- elif message.tool_calls is defined and message.tool_calls %}
{{- '[TOOL_CALLS][' }}
{%- for tool_call in message.tool_calls %}
{%- if tool_call.id is not defined or tool_call.id|length != 9 %}\
{{- raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{%- endif %}
{{- '{"name": "' + tool_call.function.name + '", "arguments": ' + \
tool_call.function.arguments|tojson + ', "id": "' + tool_call.id + '"}' }}
{%- if not loop.last %}{{- ', ' }}{%- endif %}
{%- endfor %}
{{- ']' + eos_token }}
{%- elif message.role == 'assistant' %}{{- ' ' + message.content + eos_token }}
{%- endif %}
{%- endfor %}
"""

SMOLLM2_JINJA = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}")

MISTRAL_GO = """\
{{- range $index, $_ := .Messages }}
{{- if eq .Role "user" }}[INST] {{ .Content }}[/INST]
{{- else if eq .Role "assistant" }}
{{- if .Content }} {{ .Content }}</s>
{{- else if .ToolCalls }}[TOOL_CALLS] [
{{- range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{- end }}]</s>
{{- end }}
{{- end }}
{{- end }}"""


def ids() -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"call_{next(counter):08d}"


def parse(fmt: T.ToolFormat, pieces: Sequence[str],
          names: Sequence[str] = NAMES) -> tuple[str, list[T.ToolCall]]:
    p = T.ToolCallParser(fmt, names, new_id=ids())
    content: list[str] = []
    calls: list[T.ToolCall] = []
    for piece in pieces:
        text, found = p.feed(piece)
        content.append(text)
        calls += found
    text, found = p.finish()
    return "".join(content) + text, calls + found


def whole(fmt: T.ToolFormat, text: str,
          names: Sequence[str] = NAMES) -> tuple[str, list[T.ToolCall]]:
    return parse(fmt, [text], names)


def call(index: int, name: str, **args: Any) -> T.ToolCall:
    return T.ToolCall(id=f"call_{index:08d}", index=index, name=name, arguments=args)


# ---------------------------------------------------------------------------------------------
# Detection


def test_command_r_go_template_shows_action_json_array() -> None:
    fmt = T.detect_go((DATA / "command-r.gotmpl").read_text())
    assert fmt == COMMAND_R


def test_command_r_rendered_call_parses_back() -> None:
    # What Ollama renders for an assistant tool call is what the model is taught to write.
    rendered = (DATA / "testdata" / "command-r.gotmpl" / "tools-single-call").read_text()
    answer = rendered.split("<|CHATBOT_TOKEN|>", 1)[1].split("<|END_OF_TURN_TOKEN|>", 1)[0]
    content, calls = whole(COMMAND_R, answer, ["get_weather"])
    assert (content, calls) == ("", [call(0, "get_weather", location="San Francisco, CA")])


@pytest.mark.parametrize("path", sorted(p.name for p in DATA.glob("*.gotmpl")
                                        if p.name != "command-r.gotmpl"))
def test_go_templates_without_tool_calls_mean_json_at_start(path: str) -> None:
    assert T.detect_go((DATA / path).read_text()) == T.ToolFormat()


def test_go_qwen_style_template() -> None:
    assert T.detect_go(QWEN25_GO) == HERMES


def test_go_mistral_style_template() -> None:
    assert T.detect_go(MISTRAL_GO) == MISTRAL


def test_jinja_qwen25_hermes_template() -> None:
    assert T.detect_jinja(QWEN25_JINJA) == HERMES


def test_jinja_smollm2_has_no_tools_so_json_at_start() -> None:
    assert T.detect_jinja(SMOLLM2_JINJA) == T.ToolFormat()


def test_jinja_llama31_bare_json_with_parameters() -> None:
    fmt = T.detect_jinja(LLAMA31_JINJA, bos_token="<|begin_of_text|>")
    assert fmt == T.ToolFormat(arguments_key="parameters")


def test_jinja_template_printing_arguments_as_a_string() -> None:
    src = ("{% for m in messages %}{% if m.tool_calls %}<call>{% for c in m.tool_calls %}"
           '{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments }}}'
           "{% endfor %}</call>{% else %}{{ m.content }}{% endif %}|{% endfor %}")
    assert T.detect_jinja(src) == T.ToolFormat("<call>", "</call>")


def test_jinja_mistral_array_and_nine_char_ids() -> None:
    assert T.detect_jinja(MISTRAL_JINJA, eos_token="</s>") == MISTRAL


@pytest.mark.parametrize("source", [
    "{% for %}", "{{ raise_exception('no') }}", "{{ messages[9].content }}",
    "{% for m in messages %}{% for c in m.tool_calls or [] %}<f={{ c.function.name }}>"
    "{% endfor %}{% endfor %}",  # a call written in a non-JSON form
])
def test_jinja_templates_that_show_nothing(source: str) -> None:
    assert T.detect_jinja(source) == T.ToolFormat()


@pytest.mark.parametrize("source", [
    "{{ .Prompt", "{{ .Prompt }}",
    "{{ range .Messages }}{{ .ToolCalls }}{{ end }}",  # printed Go-style, not JSON
    "{{ range .Messages }}{{ .ToolCalls }}{{ end }}{{ index .Messages 9 }}",  # exec error
])
def test_go_templates_that_show_nothing(source: str) -> None:
    assert T.detect_go(source) == T.ToolFormat()


def test_detect_follows_prompt_render_choice() -> None:
    assert T.detect(go_template=QWEN25_GO, chat_template=MISTRAL_JINJA) == HERMES
    assert T.detect(go_template=None, chat_template=MISTRAL_JINJA) == MISTRAL
    assert T.detect(go_template=None, chat_template=None) == T.ToolFormat()


def test_tool_format_validation_and_json_round_trip() -> None:
    for fmt in FORMATS:
        assert T.ToolFormat.from_json(json.loads(json.dumps(fmt.to_json()))) == fmt
        assert eval(repr(fmt), {"ToolFormat": T.ToolFormat}) == fmt
    with pytest.raises(ValueError):
        T.ToolFormat(" <tool_call>")
    with pytest.raises(ValueError):
        T.ToolFormat(name_key="x", arguments_key="x")


# ---------------------------------------------------------------------------------------------
# Parser: examples


def test_hermes_calls_with_text_before_and_after() -> None:
    text = ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": '
            '{"unit": "c", "city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "now", '
            '"arguments": {}}\n</tool_call>\nDone.')
    content, calls = whole(HERMES, text)
    assert content == "Let me check.\n\nDone."
    assert calls == [call(0, "get_weather", unit="c", city="Paris"), call(1, "now")]
    assert list(calls[0].arguments) == ["unit", "city"]  # the model's key order


def test_shapes_accepted() -> None:
    shapes = [
        '{"name": "now", "arguments": {"a": 1}}',
        '{"name": "now", "parameters": {"a": 1}}',
        '{"function": {"name": "now", "arguments": {"a": 1}}}',
        '{"type": "function", "function": {"name": "now", "arguments": "{\\"a\\": 1}"}}',
        '{"name": "now", "arguments": "{\\"a\\": 1}"}',
        '{"tool_name": "now", "parameters": {"a": 1}}',
    ]
    for fmt in FORMATS:
        for shape in shapes:
            text = f"{fmt.prefix}{shape}{fmt.suffix}"
            assert whole(fmt, text) == ("", [call(0, "now", a=1)]), (fmt, shape)


def test_no_arguments_and_empty_string_arguments() -> None:
    assert whole(HERMES, '<tool_call>{"name": "now"}</tool_call>') == ("", [call(0, "now")])
    assert whole(HERMES, '<tool_call>{"name": "now", "arguments": ""}</tool_call>') == (
        "", [call(0, "now")])


def test_array_of_calls() -> None:
    text = ('[TOOL_CALLS] [{"name": "now", "arguments": {}}, '
            '{"name": "get_weather", "arguments": {"city": "Oslo"}}]')
    assert whole(MISTRAL, text) == ("", [call(0, "now"), call(1, "get_weather", city="Oslo")])


def test_several_objects_in_one_block() -> None:
    # Ollama's qwen2.5 Go template writes every call between one pair of tags.
    text = ('<tool_call>\n{"name": "now", "arguments": {}}\n{"name": "now", "arguments": {}}\n'
            '</tool_call>')
    assert whole(HERMES, text) == ("", [call(0, "now"), call(1, "now")])


def test_json_at_start_without_a_prefix_in_the_template() -> None:
    text = '  {"name": "get_weather", "parameters": {"city": "Rome"}}'
    assert whole(T.ToolFormat(), text) == ("", [call(0, "get_weather", city="Rome")])
    # Only at the start: JSON later in the text is content.
    later = 'Answer: {"name": "now", "arguments": {}}'
    assert whole(T.ToolFormat(), later) == (later, [])


def test_json_at_start_is_tried_even_with_a_prefix() -> None:
    assert whole(HERMES, '{"name": "now", "arguments": {}}') == ("", [call(0, "now")])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("text", [
    '{"name": "unknown", "arguments": {}}',  # not one of the request's tools
    '{"city": "Paris"}',
    '[1, 2, 3]',
    '[]',
    '{"name": "now", "arguments": [1]}',  # arguments must be an object
    '{"name": "now", "arguments": "{nope"}',
    '{"name": "now", "extra": 1}',
    '{"name": "now", "arguments": NaN}',
    '{"name": "now" "arguments": {}}',  # balanced but not JSON
    '{"name": "now", "arguments": {]}',  # mismatched brackets
])
def test_non_calls_stay_content(fmt: T.ToolFormat, text: str) -> None:
    for wrapped in (text, f"{fmt.prefix}{text}{fmt.suffix}", f"hi {fmt.prefix}{text} bye"):
        assert whole(fmt, wrapped) == (wrapped, [])
        assert parse(fmt, list(wrapped)) == (wrapped, [])


def test_malformed_after_prefix_is_content_at_finish() -> None:
    text = 'ok <tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa'
    p = T.ToolCallParser(HERMES, NAMES, new_id=ids())
    assert p.feed(text) == ("ok ", [])  # the possible call is held back, not leaked
    assert p.finish() == ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa', [])
    assert p.finish() == ("", [])


def test_partial_prefix_is_held_then_released() -> None:
    p = T.ToolCallParser(HERMES, NAMES, new_id=ids())
    assert p.feed("a <tool_") == ("a ", [])
    assert p.feed("box>") == ("<tool_box>", [])
    assert p.feed(" <tool_c") == (" ", [])
    assert p.finish() == ("<tool_c", [])


def test_streaming_holds_call_text_and_reports_calls_when_complete() -> None:
    p = T.ToolCallParser(HERMES, NAMES, new_id=ids())
    assert p.feed("<tool_call>\n{\"name\": \"now\", ") == ("", [])
    assert p.feed("\"arguments\": {}}\n</tool_") == ("", [call(0, "now")])
    assert p.feed("call>") == ("", [])
    assert p.finish() == ("", [])


def test_prefix_inside_rejected_value_is_found_again() -> None:
    text = '<tool_call>{"x": "<tool_call>"} <tool_call>{"name": "now"}</tool_call>'
    content, calls = whole(HERMES, text)
    assert content == '<tool_call>{"x": "<tool_call>"} '
    assert calls == [call(0, "now")]


def test_repeated_bracket_prefix() -> None:
    text = '[TOOL_CALLS][TOOL_CALLS][{"name": "now", "arguments": {}}]'
    assert whole(MISTRAL, text) == ("[TOOL_CALLS]", [call(0, "now")])


def test_no_tools_means_everything_is_content() -> None:
    text = '<tool_call>{"name": "now", "arguments": {}}</tool_call>'
    assert whole(HERMES, text, names=()) == (text, [])


def test_ids_and_index_come_from_the_injected_source() -> None:
    made = iter(["call_abc12345", "call_zzzzzzzz"])
    p = T.ToolCallParser(HERMES, NAMES, new_id=lambda: next(made))
    _, calls = p.feed('<tool_call>{"name": "now"}</tool_call><tool_call>{"name": "now"}'
                      '</tool_call>')
    assert [(c.id, c.index) for c in calls] == [("call_abc12345", 0), ("call_zzzzzzzz", 1)]
    assert p.calls_found == 2


def test_call_too_long_is_given_up() -> None:
    p = T.ToolCallParser(HERMES, NAMES, new_id=ids(), max_call_chars=50)
    text = '<tool_call>{"name": "now", "arguments": {"a": "' + "x" * 100
    assert p.feed(text) == (text, [])
    assert p.feed('"}}</tool_call>') == ('"}}</tool_call>', [])


def test_feed_after_finish_is_a_bug() -> None:
    p = T.ToolCallParser(HERMES, NAMES, new_id=ids())
    p.finish()
    with pytest.raises(RuntimeError):
        p.feed("x")


def test_to_wire_is_ollamas_shape() -> None:
    calls = [T.ToolCall(id="call_k3j2h1g0", index=0, name="get_weather",
                        arguments={"city": "Paris", "unit": "c"}),
             T.ToolCall(id="", index=1, name="now")]
    assert T.to_wire(calls) == [
        {"id": "call_k3j2h1g0", "function": {"index": 0, "name": "get_weather",
                                             "arguments": {"city": "Paris", "unit": "c"}}},
        {"function": {"index": 1, "name": "now", "arguments": {}}},
    ]
    assert list(T.to_wire(calls)[0]) == ["id", "function"]
    assert list(T.to_wire(calls)[0]["function"]) == ["index", "name", "arguments"]
    assert repr(calls[0]).startswith("ToolCall(id='call_k3j2h1g0', index=0")


def test_wire_calls_render_back_through_the_template() -> None:
    # A client sends message.tool_calls back in the next turn; the template renders them.
    _, calls = whole(HERMES, '<tool_call>{"name": "get_weather", "arguments": '
                             '{"city": "Paris"}}</tool_call>')
    msg = Message(role="assistant", content="", tool_calls=tuple(T.to_wire(calls)))
    out = chat_template.render(QWEN25_JINJA, [{"role": "user", "content": "hi"},
                                              msg.to_template()], tools=TOOLS,
                               add_generation_prompt=False)
    assert out.endswith('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
                        '</tool_call><|im_end|>\n')
    go = gotemplate.render_chat(gotemplate.parse(QWEN25_GO),
                                [Message(role="user", content="hi"), msg], tools=TOOLS)
    assert ('<tool_call>\n{"name": "get_weather", "arguments": {"city":"Paris"}}\n</tool_call>'
            in go)


def test_tool_names() -> None:
    assert T.tool_names([WEATHER, NOW, WEATHER, {"function": {}}, {"type": "x"}]) == NAMES


# ---------------------------------------------------------------------------------------------
# Parser: properties


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                      st.text(st.characters(codec="utf-8"), max_size=8))
json_value = st.recursive(json_leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=3),
    st.dictionaries(st.text(max_size=5), kids, max_size=3)), max_leaves=8)
arguments = st.dictionaries(st.text(max_size=6), json_value, max_size=4)


@st.composite
def call_texts(draw: st.DrawFn, fmt: T.ToolFormat) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    name = draw(st.sampled_from(NAMES))
    args = draw(arguments)
    key = draw(st.sampled_from([fmt.arguments_key, "arguments", "parameters"]))
    encoded = json.dumps(args) if draw(st.booleans()) else json.dumps(json.dumps(args))
    obj = f'{{"{fmt.name_key}": {json.dumps(name)}, "{key}": {encoded}}}'
    if draw(st.booleans()):
        obj = f'{{"type": "function", "function": {obj}}}'
    ws = draw(st.sampled_from(["", "\n", " ", "\n\n"]))
    return f"{fmt.prefix}{ws}{obj}{ws}{fmt.suffix}", [(name, args)]


noise = st.sampled_from(["<", "<tool", "<tool_call>", "</tool_call>", "{", "}", "[", "]", '"',
                         "\\", "[TOOL_CALLS]", "Action: ```json", "```", " ", "\n", "x",
                         '{"name": "now"', '{"name": "nope", "arguments": {}}', "é", "🙂"])


@st.composite
def outputs(draw: st.DrawFn) -> tuple[T.ToolFormat, str]:
    fmt = draw(st.sampled_from(FORMATS))
    parts = draw(st.lists(st.one_of(call_texts(fmt).map(lambda c: c[0]), noise,
                                    st.text(max_size=6)), max_size=8))
    return fmt, "".join(parts)


def splits(text: str, cuts: Sequence[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=400, deadline=None)
@given(outputs(), st.lists(st.integers(0, 10**6), max_size=12))
def test_any_split_gives_the_same_result(case: tuple[T.ToolFormat, str],
                                         cuts: list[int]) -> None:
    fmt, text = case
    expected = whole(fmt, text)
    assert parse(fmt, list(text)) == expected
    assert parse(fmt, splits(text, cuts)) == expected


@settings(max_examples=300, deadline=None)
@given(outputs())
def test_without_calls_content_is_the_input(case: tuple[T.ToolFormat, str]) -> None:
    fmt, text = case
    content, calls = whole(fmt, text)
    if not calls:
        assert content == text


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FORMATS), st.data())
def test_generated_calls_parse_back(fmt: T.ToolFormat, data: st.DataObject) -> None:
    before = data.draw(st.text(st.characters(exclude_characters="<[{A \n\t\r"), max_size=10))
    blocks = data.draw(st.lists(call_texts(fmt), min_size=1, max_size=3))
    after = data.draw(st.sampled_from(["", "\n", " thanks"]))
    text = before + "\n".join(b[0] for b in blocks) + after
    if before and not fmt.prefix:
        return  # without a prefix, calls are only found at the start
    content, calls = parse(fmt, splits(text, data.draw(st.lists(st.integers(0, 10**6)))))
    expected = [c for b in blocks for c in b[1]]
    assert [(c.name, c.arguments) for c in calls] == expected
    assert [list(c.arguments) for c in calls] == [list(a) for _, a in expected]
    assert [c.index for c in calls] == list(range(len(expected)))
    # Whitespace around blocks is dropped; with no suffix, the block's trailing whitespace
    # cannot be told from the text's own, and is kept with the text.
    assert content.split() == (before + after).split()
    assert content.startswith(before)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FORMATS), st.text(), st.lists(st.integers(0, 10**6), max_size=8))
def test_fuzz_any_text(fmt: T.ToolFormat, text: str, cuts: list[int]) -> None:
    content, calls = parse(fmt, splits(text, cuts))
    assert isinstance(content, str)
    assert all(isinstance(c, T.ToolCall) for c in calls)
    if not calls:
        assert content == text


@settings(max_examples=100, deadline=None)
@given(arguments)
def test_qwen_template_round_trip(args: dict[str, Any]) -> None:
    """What the template renders for a call, the parser reads back, key order included."""
    msg = Message(role="assistant", content="", tool_calls=(
        {"function": {"name": "get_weather", "arguments": args}},))
    out = chat_template.render(QWEN25_JINJA, [{"role": "user", "content": "q"},
                                              msg.to_template()], add_generation_prompt=False)
    answer = out.split("<|im_start|>assistant\n", 1)[1].removesuffix("<|im_end|>\n")
    content, calls = whole(T.detect_jinja(QWEN25_JINJA), answer)
    assert content == ""
    assert [(c.name, c.arguments, list(c.arguments)) for c in calls] == [
        ("get_weather", args, list(args))]


# ---------------------------------------------------------------------------------------------
# Grammar


def test_schema_is_anyof_over_tools_with_the_templates_keys() -> None:
    schema = T.tool_call_schema(TOOLS + [{"function": {"name": "lifted", "parameters": {
        "type": "object", "properties": {"p": {"$ref": "#/$defs/P"}},
        "$defs": {"P": {"type": "integer"}}}}}], COMMAND_R)
    assert schema is not None
    alts = schema["anyOf"]
    assert [a["properties"]["tool_name"] for a in alts] == [
        {"const": "get_weather"}, {"const": "now"}, {"const": "lifted"}]
    assert alts[0]["properties"]["parameters"] == WEATHER["function"]["parameters"]
    assert alts[0]["required"] == ["tool_name", "parameters"]
    assert alts[0]["additionalProperties"] is False
    assert schema["$defs"] == {"P": {"type": "integer"}}
    assert "$defs" not in alts[2]["properties"]["parameters"]
    assert T.tool_call_schema([{"type": "function"}], HERMES) is None


def _fake_converter(schema: str) -> str:
    # Stands in for llama.cpp's converter: a root rule plus helpers, one of them named like
    # ours so the namespace must move.
    json.loads(schema)
    return 'root ::= "{" tool-x "}"\ntool-x ::= [^"\\\\] | "\\"root\\""\n'


def _rules(gbnf: str) -> dict[str, str]:
    out = {}
    for line in gbnf.splitlines():
        if "::=" in line:
            name, body = line.split("::=", 1)
            assert name.strip() not in out, f"rule {name} defined twice"
            out[name.strip()] = body
    return out


def _references(body: str) -> set[str]:
    body = re.sub(r'"(\\.|[^"\\])*"|\[(\\.|[^\]\\])*\]', " ", body)
    return set(re.findall(r"[A-Za-z][A-Za-z0-9_-]*", body))


def _check_closed(gbnf: str) -> dict[str, str]:
    rules = _rules(gbnf)
    assert "root" in rules
    for name, body in rules.items():
        assert _references(body) <= set(rules), (name, _references(body) - set(rules))
    return rules


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("allow_text", [True, False])
@pytest.mark.parametrize("parallel", [True, False])
def test_grammar_composes_with_the_converter(fmt: T.ToolFormat, allow_text: bool,
                                             parallel: bool) -> None:
    g = T.tool_call_grammar(TOOLS, fmt, json_schema_to_gbnf=_fake_converter,
                            allow_text=allow_text, parallel=parallel)
    assert g is not None
    rules = _check_closed(g)
    assert "toolx-call" in rules and "tool-x" in rules  # renamed root, untouched helper
    assert '"\\"root\\""' in rules["tool-x"]  # literals are never renamed
    if fmt.prefix:
        assert f'"{fmt.prefix}"' in rules["toolx-block"]
    if fmt.array:
        assert '"["' in rules["toolx-block"]
    assert ("toolx-text" in rules["root"] or "toolx-text-0" in rules["root"]) == allow_text
    assert ("*" in rules["toolx-calls"]) == parallel
    assert (fmt.array and parallel) == ('","' in rules["toolx-block"])
    assert T.tool_call_grammar([], fmt, json_schema_to_gbnf=_fake_converter) is None


def test_grammar_with_llama_cpps_converter() -> None:
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    for fmt in FORMATS:
        g = T.tool_call_grammar(TOOLS, fmt,
                                json_schema_to_gbnf=llama_grammar.json_schema_to_gbnf)
        assert g is not None
        rules = _check_closed(g)
        assert "tool-call" in rules and list(rules).count("root") == 1


def _text_automaton(token: str) -> Callable[[str], bool]:
    """Run the text rules of a grammar as the DFA they are."""
    rules = _rules("\n".join(T._text_without(token, "t")))
    table: dict[int, tuple[set[str], list[tuple[str, int]], int]] = {}
    for name, body in rules.items():
        state = int(name.rsplit("-", 1)[1])
        neg = re.search(r"\[\^((?:\\u[0-9a-f]{4}|[^\]])*)\] t-(\d+)", body)
        assert neg is not None
        excluded = {chr(int(m[2:], 16)) if m.startswith("\\u") else m
                    for m in re.findall(r"\\u[0-9a-f]{4}|.", neg.group(1))}
        lits = [(json.loads(m.group(1)), int(m.group(2)))
                for m in re.finditer(r'("(?:\\.|[^"\\])*") t-(\d+)', body)]
        table[state] = (excluded, lits, int(neg.group(2)))

    def accepts(text: str) -> bool:
        state = 0
        for c in text:
            excluded, lits, other = table[state]
            if c not in excluded:
                state = other
                continue
            nxt = [s for lit, s in lits if lit == c]
            if not nxt:
                return False
            state = nxt[0]
        return True

    return accepts


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["<tool_call>", "[TOOL_CALLS]", "aab", "abab", "Action: ```json"]),
       st.data())
def test_text_rules_accept_exactly_text_without_the_prefix(token: str,
                                                           data: st.DataObject) -> None:
    accepts = _text_automaton(token)
    pieces = st.sampled_from(sorted(set(token)) + [token, token[:-1], "z", "\n"])
    text = "".join(data.draw(st.lists(pieces, max_size=10)))
    assert accepts(text) == (token not in text)

