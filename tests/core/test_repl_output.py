"""How an answer is printed: word wrap, the thinking block, the --verbose timings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core.repl_output import (GREY, RESET, AnswerDisplay, WordWrap, go_duration,
                                      text_width, timing_lines)


def wrap(text: str, width: int, pieces: int = 1) -> str:
    w = WordWrap(width)
    size = max(1, len(text) // pieces)
    return "".join(w.feed(text[i:i + size]) for i in range(0, len(text), size)) + w.flush()


def test_wraps_between_words() -> None:
    assert wrap("the quick brown fox jumps", 10) == "the quick \nbrown fox \njumps"


def test_text_line_breaks_and_indentation_stay() -> None:
    assert wrap("a\n  - item\n\nb", 20) == "a\n  - item\n\nb"


def test_a_word_longer_than_the_line_is_broken() -> None:
    assert wrap("ab abcdefghij cd", 5) == "ab \nabcde\nfghij\ncd"


def test_wide_characters_count_twice() -> None:
    assert text_width("日本") == 4
    # the space ending a full line breaks it
    assert wrap("日本 日本 日本", 9) == "日本 日本\n日本"


def test_streaming_pieces_give_the_same_text() -> None:
    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod."
    assert {wrap(text, 20, n) for n in (1, 3, 7, len(text))} == {wrap(text, 20)}


@given(st.text(alphabet=st.sampled_from(list("ab c\n日")), max_size=80),
       st.integers(min_value=2, max_value=30), st.integers(min_value=1, max_value=9))
def test_wrap_keeps_every_character_and_fits_lines(text: str, width: int, pieces: int) -> None:
    out = wrap(text, width, pieces)
    assert "".join(out.split()) == "".join(text.split())
    assert all(text_width(line) <= width for line in out.split("\n"))


def test_wrap_width_must_be_positive() -> None:
    with pytest.raises(ValueError):
        WordWrap(0)


def test_thinking_then_answer_plain() -> None:
    d = AnswerDisplay(width=None, plain=True)
    out = d.feed(thinking="Let me see") + d.feed(thinking=".") + d.feed(content="Yes.")
    out += d.finish()
    assert out == "Thinking...\nLet me see.\n...done thinking.\n\nYes."
    assert (d.thinking, d.content) == ("Let me see.", "Yes.")


def test_thinking_is_dimmed_on_a_terminal() -> None:
    d = AnswerDisplay(width=None, plain=False)
    out = d.feed(thinking="hmm\n") + d.feed(content="ok")
    assert out.startswith(GREY) and "hmm\n" in out and out.endswith(RESET + "ok")
    assert "hmm\n\n" not in out  # no extra break after a thought that ended its line


def test_hidden_thinking_is_kept_not_shown() -> None:
    d = AnswerDisplay(width=None, plain=True, hide_thinking=True)
    assert d.feed(thinking="secret") == ""
    assert d.feed(content="answer") + d.finish() == "answer"
    assert d.thinking == "secret"


def test_interrupted_thought_resets_the_colour() -> None:
    d = AnswerDisplay(width=None, plain=False)
    d.feed(thinking="half")
    assert d.finish() == RESET


def test_wrapped_answer_flushes_at_the_end() -> None:
    d = AnswerDisplay(width=10, plain=True)
    assert d.feed(content="hello wor") == "hello "
    assert d.feed(content="ld again") == "\nworld "
    assert d.finish() == "\nagain"


@pytest.mark.parametrize("ns, text", [
    (0, "0s"), (999, "999ns"), (1_500, "1.5µs"), (2_000_000, "2ms"),
    (938_034_117, "938.034117ms"), (2_757_145_676, "2.757145676s"), (1_000_000_000, "1s"),
    (61_500_000_000, "1m1.5s"), (3_600_000_000_000, "1h0m0s"), (-1_500_000, "-1.5ms"),
])
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_timing_lines() -> None:
    final = {"total_duration": 2_757_145_676, "load_duration": 938_034_117,
             "prompt_eval_count": 33, "prompt_eval_duration": 861_995_850,
             "eval_count": 56, "eval_duration": 936_660_945}
    assert timing_lines(final) == [
        "total duration:       2.757145676s",
        "load duration:        938.034117ms",
        "prompt eval count:    33 token(s)",
        "prompt eval duration: 861.99585ms",
        "prompt eval rate:     38.28 tokens/s",
        "eval count:           56 token(s)",
        "eval duration:        936.660945ms",
        "eval rate:            59.79 tokens/s",
    ]


def test_timing_lines_leave_out_zeros() -> None:
    assert timing_lines({"total_duration": 5, "eval_count": 0, "load_duration": True}) == [
        "total duration:       5ns"]
