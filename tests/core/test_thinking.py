from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pollama.core import gotemplate
from pollama.core.errors import BadRequest
from pollama.core.requests import Message
from pollama.core.thinking import (
    GO_WHITESPACE,
    THINK_TAGS,
    ThinkingParser,
    ThinkingState,
    ThinkingTags,
    ThinkSetting,
    capable,
    infer_tags,
    prompt_opens_thinking,
    resolve_think,
    strip_previous_thinking,
)

S = ThinkingState

# A qwen3-like chat template: reasoning of assistant turns is rendered as <think>…</think>.
QWEN3_LIKE = """\
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ if and $.IsThinkSet (not $.Think) }}<think>

</think>

{{ end }}
{{- end }}
{{- end }}"""

CHATML = """\
{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


# ---------------------------------------------------------------------------------------------
# Tag inference


def test_go_template_with_thinking_tags() -> None:
    assert infer_tags(QWEN3_LIKE, is_go=True) == ThinkingTags("<think>", "</think>")
    assert capable(QWEN3_LIKE, True)


def test_go_template_without_thinking() -> None:
    assert infer_tags(CHATML, is_go=True) is None
    assert not capable(CHATML, True)
    assert not capable("{{ .Prompt }}", True)
    assert not capable("", True) and not capable(None, True)


def test_go_tags_are_trimmed_text_around_thinking() -> None:
    tmpl = "{{ range .Messages }}{{ if .Thinking }}\n  [THOUGHT]  {{ .Thinking }}\n[/THOUGHT]\n" \
           "{{ end }}{{ .Content }}{{ end }}"
    assert infer_tags(tmpl, is_go=True) == ThinkingTags("[THOUGHT]", "[/THOUGHT]")


def test_go_thinking_outside_a_messages_range_does_not_count() -> None:
    # .Thinking at top level, and inside a range over something else than .Messages.
    assert not capable("{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}"
                       "{{ range .Messages }}{{ .Content }}{{ end }}", True)
    assert not capable("{{ range .Messages }}{{ range .Other }}<think>{{ .Thinking }}</think>"
                       "{{ end }}{{ end }}", True)


def test_go_later_thinking_reference_wins_and_needs_text_at_both_ends() -> None:
    # The `if` pipeline's .Thinking sits in a list starting with "<|im_start|>assistant"; the
    # body's .Thinking comes later and overrides it (InferTags keeps the last match).
    tmpl = "{{ range .Messages }}<|im_start|>assistant{{ if .Thinking }}<t>{{ .Thinking }}</t>" \
           "{{ end }}{{ end }}"
    assert infer_tags(tmpl, is_go=True) == ThinkingTags("<t>", "</t>")
    # No text after .Thinking in its list: no closing tag, so no thinking.
    assert not capable("{{ range .Messages }}<t>{{ .Thinking }}{{ end }}", True)


def test_go_template_that_does_not_parse_cannot_think() -> None:
    assert not capable("{{ range .Messages }}<think>{{ .Thinking }</think>{{ end }}", True)


JINJA_QWEN = (
    "{%- for message in messages %}{%- if message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n<think>\\n' + reasoning_content + '\\n</think>\\n\\n'"
    " + content }}"
    "{%- endif %}{%- endfor %}"
)


@pytest.mark.parametrize("text, tags", [
    (JINJA_QWEN, THINK_TAGS),
    ("{{ '<|START_THINKING|>' + message.thinking + '<|END_THINKING|>' }}",
     ThinkingTags("<|START_THINKING|>", "<|END_THINKING|>")),
    ("{% set content = message.content.split('</think>')[-1].lstrip('\\n') %}", THINK_TAGS),
    ('{% set content = message.content.split("</think>")[-1] %}', THINK_TAGS),
    ("{{- '<think>' + reasoning }}", None),  # half a pair is not a pair
    ("{# the model may emit </think> #}{{ message.content }}", None),
    ("{% for m in messages %}{{ m.content }}{% endfor %}", None),
    ("", None),
])
def test_jinja_tags(text: str, tags: ThinkingTags | None) -> None:
    assert infer_tags(text, is_go=False) == tags
    assert capable(text, False) is (tags is not None)


def test_tags_must_not_be_empty() -> None:
    with pytest.raises(ValueError):
        ThinkingTags("", "</think>")


# ---------------------------------------------------------------------------------------------
# Parser: recorded step behaviour of Ollama's thinking.Parser


STEPS: list[tuple[str, list[tuple[str, str, str, ThinkingState]]]] = [
    ("no tag: content as is, whitespace kept", [
        ("  abc", "", "  abc", S.THINKING_DONE),
        ("def", "", "def", S.THINKING_DONE),
    ]),
    ("text before the opening tag: no thinking at all", [
        ("  abc <think>def</think> ghi", "", "  abc <think>def</think> ghi", S.THINKING_DONE),
    ]),
    ("opening tag split across pieces", [
        ("  <th", "", "", S.LOOKING_FOR_OPENING),
        ("in", "", "", S.LOOKING_FOR_OPENING),
        ("k>a", "a", "", S.THINKING),
    ]),
    ("closing tag split across pieces", [
        ("<think>abc</th", "abc", "", S.THINKING),
        ("ink>def", "", "def", S.THINKING_DONE),
    ]),
    ("something that only looked like a closing tag", [
        ("<think>abc</th", "abc", "", S.THINKING),
        ("ing>def", "</thing>def", "", S.THINKING),
        ("ghi</thi", "ghi", "", S.THINKING),
        ("nk>jkl", "", "jkl", S.THINKING_DONE),
    ]),
    ("whitespace after the closing tag", [
        ("  <think>abc</think>\n\ndef", "abc", "def", S.THINKING_DONE),
    ]),
    ("whitespace after the closing tag, in pieces", [
        ("  <think>abc</think>", "abc", "", S.THINKING_DONE_EATING_WHITESPACE),
        ("\n\ndef", "", "def", S.THINKING_DONE),
    ]),
    ("only leading whitespace of content is trimmed", [
        ("  <think>abc</think>\n\ndef ", "abc", "def ", S.THINKING_DONE),
        (" ghi", "", " ghi", S.THINKING_DONE),
    ]),
    ("token by token", [
        ("<think>", "", "", S.THINKING_STARTED_EATING_WHITESPACE),
        ("\n", "", "", S.THINKING_STARTED_EATING_WHITESPACE),
        ("</think>", "", "", S.THINKING_DONE_EATING_WHITESPACE),
        ("\n\n", "", "", S.THINKING_DONE_EATING_WHITESPACE),
        ("Hi", "", "Hi", S.THINKING_DONE),
        (" there", "", " there", S.THINKING_DONE),
    ]),
    ("whitespace after the opening tag", [
        ("  <think>   \t ", "", "", S.THINKING_STARTED_EATING_WHITESPACE),
        ("  these are some ", "these are some ", "", S.THINKING),
        ("thoughts </think>  ", "thoughts ", "", S.THINKING_DONE_EATING_WHITESPACE),
        ("  more content", "", "more content", S.THINKING_DONE),
    ]),
    ("only the first closing tag ends thinking", [
        ("<think>a</think><think>b</think>c", "a", "<think>b</think>c", S.THINKING_DONE),
    ]),
    ("no closing tag: everything is thinking", [
        ("<think>all of it", "all of it", "", S.THINKING),
        (" and more", " and more", "", S.THINKING),
    ]),
]


@pytest.mark.parametrize("steps", [s for _, s in STEPS], ids=[d for d, _ in STEPS])
def test_parser_steps(steps: list[tuple[str, str, str, ThinkingState]]) -> None:
    p = ThinkingParser(THINK_TAGS)
    for text, thinking, content, state in steps:
        assert p.feed(text) == (thinking, content)
        assert p.state is state


def test_starts_in_thinking() -> None:
    p = ThinkingParser(THINK_TAGS, starts_in_thinking=True)
    assert p.state is S.THINKING_STARTED_EATING_WHITESPACE
    assert p.feed("\nLet me see") == ("Let me see", "")
    assert p.feed(".</think>\n\nAnswer") == (".", "Answer")
    assert p.finish() == ("", "")


def test_starts_in_thinking_keeps_a_later_opening_tag_as_thinking() -> None:
    p = ThinkingParser(THINK_TAGS, starts_in_thinking=True)
    assert p.feed("<think>x</think>y") == ("<think>x", "y")


def test_for_prompt() -> None:
    assert prompt_opens_thinking("<|im_start|>assistant\n<think>\n", THINK_TAGS)
    assert not prompt_opens_thinking("<|im_start|>assistant\n<think>\n\n</think>\n\n", THINK_TAGS)
    assert ThinkingParser.for_prompt(THINK_TAGS, "x<think>\n").state \
        is S.THINKING_STARTED_EATING_WHITESPACE
    assert ThinkingParser.for_prompt(THINK_TAGS, "x").state is S.LOOKING_FOR_OPENING


@pytest.mark.parametrize("pieces, held", [
    (["  <thi"], ("", "  <thi")),  # a partial opening tag that never completed is content
    (["\n", "  "], ("", "\n  ")),  # whitespace only
    (["<think>abc</thi"], ("</thi", "")),  # a partial closing tag at the end is thinking
    (["<think>abc"], ("", "")),
    ([], ("", "")),
])
def test_finish_releases_held_text(pieces: list[str], held: tuple[str, str]) -> None:
    p = ThinkingParser(THINK_TAGS)
    for piece in pieces:
        p.feed(piece)
    assert p.finish() == held
    assert p.finish() == ("", "")
    with pytest.raises(RuntimeError):
        p.feed("x")


def test_go_whitespace_not_python_whitespace() -> None:
    # U+001C is whitespace to Python but not to Go's unicode.IsSpace; U+3000 and U+0085 are both.
    assert run(["\x1c<think>a</think>b"]) == ("", "\x1c<think>a</think>b")
    assert run(["\u3000\x85<think>\u3000a</think>\u2028b"]) == ("a", "b")


def test_other_tags() -> None:
    tags = ThinkingTags("<|START_THINKING|>", "<|END_THINKING|>")
    assert run(list("<|START_THINKING|>hmm<|END_THINKING|> ok"), tags) == ("hmm", "ok")


def test_repr_is_python() -> None:
    assert eval(repr(ThinkingParser(THINK_TAGS, starts_in_thinking=True))).state \
        is S.THINKING_STARTED_EATING_WHITESPACE
    setting = ThinkSetting(think=True, level="high", is_set=True)
    assert eval(repr(setting)) == setting


# ---------------------------------------------------------------------------------------------
# Parser: chunking does not matter, and the documented invariant holds


def run(pieces: list[str], tags: ThinkingTags = THINK_TAGS,
        starts_in_thinking: bool = False) -> tuple[str, str]:
    p = ThinkingParser(tags, starts_in_thinking=starts_in_thinking)
    thinking: list[str] = []
    content: list[str] = []
    for piece in pieces:
        t, c = p.feed(piece)
        thinking.append(t)
        content.append(c)
    t, c = p.finish()
    return "".join(thinking) + t, "".join(content) + c


def _ws_run(s: str, i: int) -> int:
    while i < len(s) and s[i] in GO_WHITESPACE:
        i += 1
    return i


def decompose(s: str, tags: ThinkingTags, starts_in_thinking: bool) -> tuple[str, str]:
    """The invariant of the module docstring, written directly on the whole text."""
    if starts_in_thinking:
        s = tags.open + s
    i = _ws_run(s, 0)
    if not s.startswith(tags.open, i):
        return "", s
    i = _ws_run(s, i + len(tags.open))
    j = s.find(tags.close, i)
    if j < 0:
        return s[i:], ""
    return s[i:j], s[_ws_run(s, j + len(tags.close)):]


def _split(s: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(s)) for c in cuts})
    out, prev = [], 0
    for p in points:
        out.append(s[prev:p])
        prev = p
    out.append(s[prev:])
    return out


# Text built from tag fragments, whitespace (Go's and Python-only) and letters, so partial and
# repeated tags are common.
_FRAGMENTS = ["<think>", "</think>", "<", "</", "<th", "think", "ink>", ">", "/", " ", "\n",
              "\t", "\u3000", "\x1c", "a", "b", "é"]
texts = st.lists(st.sampled_from(_FRAGMENTS), max_size=25).map("".join) | st.text(max_size=30)
tag_pairs = st.sampled_from([THINK_TAGS, ThinkingTags("[T]", "[/T]"), ThinkingTags("aa", "ab"),
                             ThinkingTags("<", ">")])


@given(texts, st.lists(st.integers(0, 40), max_size=8), st.booleans())
def test_any_split_equals_whole_equals_char_by_char(s: str, cuts: list[int],
                                                    starts: bool) -> None:
    whole = run([s], starts_in_thinking=starts)
    assert run(_split(s, cuts), starts_in_thinking=starts) == whole
    assert run(list(s), starts_in_thinking=starts) == whole


@given(texts, st.lists(st.integers(0, 40), max_size=8), st.booleans(), tag_pairs)
def test_invariant(s: str, cuts: list[int], starts: bool, tags: ThinkingTags) -> None:
    thinking, content = run(_split(s, cuts), tags, starts)
    assert (thinking, content) == decompose(s, tags, starts)
    # Restated as the reconstruction: nothing but the tags and whitespace next to them is lost.
    full = tags.open + s if starts else s
    if thinking or content != full:
        head, sep, tail = full.partition(tags.open)
        assert sep and head.strip(GO_WHITESPACE) == ""
        assert tail.lstrip(GO_WHITESPACE).startswith(thinking)
        rest = tail.lstrip(GO_WHITESPACE)[len(thinking):]
        assert tags.close not in thinking
        if rest:
            assert rest.startswith(tags.close)
            assert rest[len(tags.close):].lstrip(GO_WHITESPACE) == content
        else:
            assert content == ""


@given(st.text(max_size=20), st.text(min_size=1, max_size=20), st.text(max_size=20),
       st.sampled_from(["", " ", "\n\n"]))
def test_structured_response(thought: str, answer: str, pre: str, gap: str) -> None:
    thought = thought.strip(GO_WHITESPACE)
    assume("</think>" not in thought)
    answer = answer.strip(GO_WHITESPACE) or "x"
    s = f"{pre if not pre.strip(GO_WHITESPACE) else ''}<think>{gap}{thought}</think>{gap}{answer}"
    assert run(list(s)) == (thought, answer)


# ---------------------------------------------------------------------------------------------
# resolve_think (Ollama's api/types.go ThinkValue)


@pytest.mark.parametrize("requested, is_capable, want", [
    (None, True, ThinkSetting(think=True, level="medium", is_set=True)),
    (True, True, ThinkSetting(think=True, level="medium", is_set=True)),
    ("low", True, ThinkSetting(think=True, level="low", is_set=True)),
    ("medium", True, ThinkSetting(think=True, level="medium", is_set=True)),
    ("high", True, ThinkSetting(think=True, level="high", is_set=True)),
    ("max", True, ThinkSetting(think=True, level="max", is_set=True)),
    (False, True, ThinkSetting(think=False, level="", is_set=True)),
    (None, False, ThinkSetting(think=None, level="", is_set=False)),
    (False, False, ThinkSetting(think=False, level="", is_set=True)),
])
def test_resolve_think(requested: object, is_capable: bool, want: ThinkSetting) -> None:
    assert resolve_think(requested, is_capable, "m") == want


@pytest.mark.parametrize("requested", [True, "low", "medium", "high", "max"])
def test_resolve_think_refuses_non_thinking_model(requested: object) -> None:
    with pytest.raises(BadRequest) as e:
        resolve_think(requested, False, "llama3.2")
    assert e.value.message == '"llama3.2" does not support thinking'
    assert e.value.status_hint == 400


def test_resolve_think_repull_hint_for_qwen3_and_deepseek_r1() -> None:
    hint = ('"qwen3:8b" does not support thinking. Pull the model again to get the latest '
            'version with full thinking support')
    with pytest.raises(BadRequest) as e:
        resolve_think(True, False, "qwen3:8b", family="qwen3")
    assert e.value.message == hint
    with pytest.raises(BadRequest) as e:
        resolve_think("high", False, "deepseek-r1:7b", family="qwen2")
    assert e.value.message.endswith("full thinking support")


@pytest.mark.parametrize("bad", ["x", "", 1, 0.5, [], {}])
def test_resolve_think_invalid_value(bad: object) -> None:
    with pytest.raises(BadRequest) as e:
        resolve_think(bad, True, "m")
    assert e.value.message.startswith("invalid think value: ")
    assert e.value.message.endswith('(must be "high", "medium", "low", "max", true, or false)')


def test_think_setting_rejects_inconsistent_values() -> None:
    for kwargs in ({"think": True, "level": "", "is_set": True},
                   {"think": None, "level": "", "is_set": True},
                   {"think": False, "level": "low", "is_set": True}):
        with pytest.raises(ValueError):
            ThinkSetting(**kwargs)  # type: ignore[arg-type]


def test_render_kwargs_reach_the_template() -> None:
    tmpl = gotemplate.parse(QWEN3_LIKE)
    msgs = [Message(role="user", content="hi")]
    on = resolve_think(None, True, "m")
    off = resolve_think(False, True, "m")
    assert on.render_kwargs() == {"think": True, "think_level": "medium", "is_think_set": True}
    assert gotemplate.render_chat(tmpl, msgs, **on.render_kwargs()).endswith(
        "<|im_start|>assistant\n")
    assert gotemplate.render_chat(tmpl, msgs, **off.render_kwargs()).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    level = gotemplate.parse("{{ .ThinkLevel }}|{{ .Think }}|{{ .IsThinkSet }}")
    assert gotemplate.render_chat(level, msgs, **resolve_think("high", True, "m")
                                  .render_kwargs()) == "high|true|true"
    assert gotemplate.render_chat(level, msgs, **resolve_think(None, False, "m")
                                  .render_kwargs()) == "|false|false"


# ---------------------------------------------------------------------------------------------
# strip_previous_thinking (Ollama's server/routes.go ChatHandler)


def _conversation() -> list[Message]:
    return [
        Message(role="system", content="sys"),
        Message(role="user", content="q1"),
        Message(role="assistant", content="<think>\nold reasoning\n</think>\n\nA1",
                thinking="kept"),
        Message(role="user", content="q2"),
        Message(role="assistant", content="<think>prefill</think>partial"),
    ]


def test_strip_previous_thinking_for_qwen3() -> None:
    msgs = _conversation()
    out = strip_previous_thinking(msgs, "qwen3")
    assert out[2] == Message(role="assistant", content="A1", thinking="kept")
    # The assistant turn after the last user message is left alone, as are the others.
    assert out[4] is msgs[4] and out[0] is msgs[0] and out[1] is msgs[1]
    assert msgs[2].content.startswith("<think>")  # the input is not modified


def test_strip_previous_thinking_for_deepseek_r1_by_name() -> None:
    out = strip_previous_thinking(_conversation(), "qwen2", model_name="deepseek-r1:1.5b")
    assert out[2].content == "A1"
    out = strip_previous_thinking(_conversation(), "deepseek-r1")
    assert out[2].content == "A1"


def test_strip_previous_thinking_other_families_untouched() -> None:
    msgs = _conversation()
    assert strip_previous_thinking(msgs, "llama", model_name="llama3.2") == msgs


def test_strip_previous_thinking_quirks_match_ollama() -> None:
    msgs = [
        Message(role="assistant", content="no tags here"),
        Message(role="assistant", content="text first <think>x</think> y"),
        Message(role="assistant", content="<think>never closed"),
        Message(role="user", content="q"),
    ]
    out = strip_previous_thinking(msgs, "qwen3")
    assert [m.content for m in out[:3]] == ["no tags here", "text first <think>x</think> y", ""]
