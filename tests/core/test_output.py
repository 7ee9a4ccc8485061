from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import requests as rq
from pollama.core.errors import BadRequest
from pollama.core.output import OutputPipeline, Piece
from pollama.core.thinking import THINK_TAGS, ThinkingParser
from pollama.core.tools import ToolCallParser, ToolFormat

FMT = ToolFormat(prefix="<tool_call>", suffix="</tool_call>")
TEXT = ('<think>Let me check.</think>Sure.<tool_call>\n{"name": "get_weather", '
        '"arguments": {"city": "Paris"}}\n</tool_call>')


def pipeline() -> OutputPipeline:
    ids = itertools.count()
    return OutputPipeline(thinking=ThinkingParser(THINK_TAGS),
                          tools=ToolCallParser(FMT, ("get_weather",),
                                               new_id=lambda: f"call_{next(ids):08d}"))


def collect(pieces: list[Piece]) -> tuple[str, str, list[str]]:
    return ("".join(p.thinking for p in pieces), "".join(p.content for p in pieces),
            [c.name for p in pieces for c in p.tool_calls])


@given(st.lists(st.integers(1, 9), max_size=40))
def test_any_split_gives_the_same_pieces(cuts: list[int]) -> None:
    p = pipeline()
    out: list[Piece] = []
    i = 0
    for n in cuts:
        out += p.feed(TEXT[i:i + n])
        i += n
    out += p.feed(TEXT[i:])
    out += p.finish()
    assert collect(out) == ("Let me check.", "Sure.", ["get_weather"])
    call_pieces = [x for x in out if x.tool_calls]
    assert len(call_pieces) == 1 and call_pieces[0].content == ""


def test_plain_text_passes_through() -> None:
    p = OutputPipeline()
    assert collect(p.feed("hello") + p.finish()) == ("", "hello", [])


@pytest.mark.parametrize(("value", "choice", "n"), [
    (None, "auto", 1), ("auto", "auto", 1), ("none", "auto", 0), ("required", "required", 1),
    ({"type": "function", "function": {"name": "f"}}, "required", 1),
])
def test_tool_choice(value: object, choice: str, n: int) -> None:
    tools = [{"type": "function", "function": {"name": "f"}},
             {"type": "function", "function": {"name": "g"}}]
    req = rq.parse_chat({"model": "m", "tools": tools, "tool_choice": value})
    assert req.tool_choice == choice
    assert len(req.tools) == (2 if n and not isinstance(value, dict) else n)


@pytest.mark.parametrize("value", ["always", 3, {"function": {"name": "missing"}}])
def test_tool_choice_invalid(value: object) -> None:
    with pytest.raises(BadRequest):
        rq.parse_chat({"model": "m", "tools": [{"function": {"name": "f"}}], "tool_choice": value})


def test_thinking_done_marks_where_a_format_grammar_starts() -> None:
    """format + thinking (Ollama's api/types.go ThinkValue): the adapter cancels the free pass once
    the pipeline says the reasoning is over, and continues the prompt through the closing tag."""
    from pollama.core.thinking import through_closing_tag

    p = OutputPipeline(thinking=ThinkingParser(THINK_TAGS, starts_in_thinking=True))
    raw = ""
    for piece in ["It is ", "Paris.</th"]:
        raw += piece
        p.feed(piece)
        assert not p.thinking_done
    raw += "ink>\n\n"
    p.feed("ink>\n\n")
    assert p.thinking_done  # at the closing tag, before any answer text
    assert through_closing_tag(raw, THINK_TAGS) == "It is Paris.</think>"
    after = p.without_thinking()
    assert after.thinking_tags is None and not after.thinking_done
    assert after.feed("<think>x") == [Piece(content="<think>x")]  # no parsing after reasoning
    # a model that answers without reasoning: done at once, nothing to carry over
    q = OutputPipeline(thinking=ThinkingParser(THINK_TAGS))
    q.feed("Paris")
    assert q.thinking_done and through_closing_tag("Paris", THINK_TAGS) == ""
    assert not OutputPipeline().thinking_done
