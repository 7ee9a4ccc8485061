from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pollama.core.stops import StopMatcher


def run(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    m = StopMatcher(stops)
    out = "".join(m.feed(p) for p in pieces)
    if not m.stopped:
        out += m.flush()
    return out, m.stopped


def test_no_stops_passes_through() -> None:
    assert run(["a", "b"], []) == ("ab", False)


def test_stop_split_across_pieces() -> None:
    assert run(["Hello <|im", "_end|> more"], ["<|im_end|>"]) == ("Hello ", True)


def test_partial_prefix_released_when_not_a_stop() -> None:
    m = StopMatcher(["STOP"])
    assert m.feed("abST") == "ab"
    assert m.feed("x") == "STx"
    assert m.flush() == ""


def test_earliest_of_several() -> None:
    assert run(["one two three"], ["three", "two"]) == ("one ", True)


def test_held_text_flushed_at_end() -> None:
    assert run(["abS"], ["STOP"]) == ("abS", False)


@given(st.text(max_size=40), st.text(min_size=1, max_size=5), st.integers(1, 6))
def test_equivalent_to_find(text: str, stop: str, step: int) -> None:
    pieces = [text[i:i + step] for i in range(0, len(text), step)]
    out, stopped = run(pieces, [stop])
    idx = text.find(stop)
    if idx >= 0:
        assert stopped and out == text[:idx]
    else:
        assert not stopped and out == text
