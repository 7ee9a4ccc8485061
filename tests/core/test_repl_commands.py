"""The REPL's line reader: each Ollama command, multi-line blocks, and arbitrary input."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import repl_commands as rc


def feed_all(*lines: str, reader: rc.LineReader | None = None) -> list[rc.Command | None]:
    reader = reader or rc.LineReader()
    return [reader.feed(line) for line in lines]


def one(line: str) -> rc.Command | None:
    return rc.LineReader().feed(line)


def test_prompt_and_blank_lines() -> None:
    assert one("Why is the sky blue?") == rc.Prompt(text="Why is the sky blue?")
    assert one("") is None
    assert one("   ") is None


@pytest.mark.parametrize("line, expected", [
    ("/bye", rc.Bye()),
    ("/exit", rc.Bye()),
    ("/byebye", rc.Bye()),  # prefix match, as Ollama's strings.HasPrefix
    ("/clear", rc.Clear()),
    ("/load smol", rc.Load(model="smol")),
    ("/save my-session", rc.Save(name="my-session")),
    ("/list", rc.ListModels(prefix="")),
    ("/list smo", rc.ListModels(prefix="smo")),
    ("/show info", rc.Show(topic=rc.ShowTopic.INFO)),
    ("/show modelfile", rc.Show(topic=rc.ShowTopic.MODELFILE)),
    ("/show parameters", rc.Show(topic=rc.ShowTopic.PARAMETERS)),
    ("/show license", rc.Show(topic=rc.ShowTopic.LICENSE)),
    ("/show system", rc.Show(topic=rc.ShowTopic.SYSTEM)),
    ("/show template", rc.Show(topic=rc.ShowTopic.TEMPLATE)),
    ("/set verbose", rc.SetVerbose(on=True)),
    ("/set quiet", rc.SetVerbose(on=False)),
    ("/set wordwrap", rc.SetWordWrap(on=True)),
    ("/set nowordwrap", rc.SetWordWrap(on=False)),
    ("/set history", rc.SetHistory(on=True)),
    ("/set nohistory", rc.SetHistory(on=False)),
    ("/set format json", rc.SetFormat(format="json")),
    ("/set noformat", rc.SetFormat(format="")),
    ("/set think", rc.SetThink(value=True)),
    ("/set think high", rc.SetThink(value="high")),
    ("/set nothink", rc.SetThink(value=False)),
    ("/set system You are terse.", rc.SetSystem(text="You are terse.")),
    ('/set system """One line."""', rc.SetSystem(text="One line.")),
    ("/set template {{ .Prompt }}", rc.SetTemplate(text="{{ .Prompt }}")),
    ("/set parameter num_predict 8", rc.SetParameter(name="num_predict", value=8, raw=("8",))),
    ("/set parameter temperature 0", rc.SetParameter(name="temperature", value=0.0,
                                                      raw=("0",))),
    ("/set parameter stop a b", rc.SetParameter(name="stop", value=["a", "b"],
                                                raw=("a", "b"))),
    ("/set parameter seed 42 43", rc.SetParameter(name="seed", value=42, raw=("42", "43"))),
])
def test_commands(line: str, expected: rc.Command) -> None:
    assert one(line) == expected
    # reprs are valid Python: a failing case can be pasted into a test
    assert eval(repr(expected), vars(rc)) == expected


def test_replies_are_ollamas() -> None:
    assert rc.SetParameter(name="stop", value=["a", "b"], raw=("a", "b")).reply == \
        "Set parameter 'stop' to 'a, b'"
    assert rc.SetSystem(text="x").reply == "Set system message."
    assert rc.SetTemplate(text="x").reply == "Set prompt template."
    assert rc.SetVerbose(on=True).reply == "Set 'verbose' mode."
    assert rc.SetVerbose(on=False).reply == "Set 'quiet' mode."
    assert rc.SetWordWrap(on=False).reply == "Set 'nowordwrap' mode."
    assert rc.SetFormat(format="json").reply == "Set format to 'json' mode."
    assert rc.SetFormat(format="").reply == "Disabled format."
    assert rc.SetThink(value=True).reply == "Set 'think' mode."
    assert rc.SetThink(value="low").reply == "Set 'think' mode to 'low'."
    assert rc.SetThink(value=False).reply == "Set 'nothink' mode."
    assert rc.SetHistory(on=False).reply == ""
    assert rc.Clear().reply == "Cleared session context"
    assert rc.Unknown(word="/x", line="/x y").reply == "Unknown command '/x'. Type /? for help"


@pytest.mark.parametrize("line, text", [
    ("/set parameter num_predict x", 'Couldn\'t set parameter: "invalid int value [x]"'),
    ("/set parameter nonsense 1", 'Couldn\'t set parameter: "unknown parameter \'nonsense\'"'),
    ("/set parameter temperature hot", 'Couldn\'t set parameter: "invalid float value [hot]"'),
])
def test_bad_parameters(line: str, text: str) -> None:
    assert one(line) == rc.Say(text=text)


@pytest.mark.parametrize("line, text, err", [
    ("/set", rc.USAGE_SET, True),
    ("/set system", rc.USAGE_SET, True),
    ("/set parameter", rc.USAGE_PARAMETERS, True),
    ("/set parameter seed", rc.USAGE_PARAMETERS, True),
    ("/show", rc.USAGE_SHOW, True),
    ("/?", rc.usage(), True),
    ("/help", rc.usage(), True),
    ("/? set", rc.USAGE_SET, True),
    ("/help /show", rc.USAGE_SHOW, True),
    ("/? shortcuts", rc.USAGE_SHORTCUTS, True),
    ("/? nothing", rc.usage(), True),
    ("/load", "Usage:\n  /load <modelname>\n", False),
    ("/load a b", "Usage:\n  /load <modelname>\n", False),
    ("/save", "Usage:\n  /save <modelname>\n", False),
    ("/set format yaml", "Invalid or missing format. For 'json' mode use '/set format json'\n",
     False),
    ("/set bogus", "Unknown command '/set bogus'. Type /? for help\n", False),
    ("/show bogus", "Unknown command '/show bogus'. Type /? for help\n", False),
])
def test_help_and_usage(line: str, text: str, err: bool) -> None:
    assert one(line) == rc.Say(text=text, err=err)


def test_help_mentions_images_for_a_vision_model() -> None:
    assert "images" not in rc.usage()
    help_text = rc.LineReader(multimodal=True).feed("/?").text  # type: ignore[union-attr]
    assert "/path/to/file" in help_text


def test_unknown_command_keeps_the_line() -> None:
    assert one("/tmp/cat.png what is this?") == rc.Unknown(word="/tmp/cat.png",
                                                           line="/tmp/cat.png what is this?")


def test_multiline_prompt() -> None:
    reader = rc.LineReader()
    assert reader.feed('"""Hello') is None
    assert reader.continuing
    assert reader.feed("  indented /bye stays text") is None
    assert reader.feed('world"""') == rc.Prompt(text="Hello\n  indented /bye stays text\nworld")
    assert not reader.continuing


def test_multiline_prompt_opened_alone() -> None:
    # Ollama keeps the line breaks after the opening and before the closing quotes
    assert feed_all('"""', "a", "b", '"""') == [None, None, None, rc.Prompt(text="\na\nb\n")]


def test_one_line_quoted_prompt_and_empty_blocks() -> None:
    assert one('"""just this"""') == rc.Prompt(text="just this")
    assert one('""""""') is None
    assert feed_all('"""', '"""') == [None, None]  # only a line break: nothing to send


def test_multiline_system_and_template() -> None:
    assert feed_all('/set system """You are', 'a pirate."""') == [
        None, rc.SetSystem(text="You are\na pirate.")]
    assert feed_all('/set template """{{ .System }}', '{{ .Prompt }}"""') == [
        None, rc.SetTemplate(text="{{ .System }}\n{{ .Prompt }}")]


def test_reset_drops_an_open_block() -> None:
    reader = rc.LineReader()
    reader.feed('"""half a thought')
    reader.reset()
    assert not reader.continuing
    assert reader.feed("/bye") == rc.Bye()


def test_commands_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        rc.Prompt(text="a").text = "b"  # type: ignore[misc]


WORDS = list('/"abc ?\t') + ["/set ", "/show ", '"""', "parameter ", "system ", "think "]


@given(st.lists(st.lists(st.sampled_from(WORDS), max_size=12), max_size=12))
def test_any_lines_give_commands_or_none(lines: list[list[str]]) -> None:
    reader = rc.LineReader()
    for words in lines:
        line = "".join(words)
        out = reader.feed(line)
        assert out is None or isinstance(out, rc.Command)  # type: ignore[misc, arg-type]
        if isinstance(out, rc.Prompt):
            assert out.text.strip()
