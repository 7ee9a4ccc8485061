"""core/json_grammar.repetition (llama.cpp's build_repetition, ``{m,n}`` for llama.cpp's parser
to expand) and integer bounds past the int64 range."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core.json_grammar import INT64_MAX, INT64_MIN, integer_bounds, repetition


@pytest.mark.parametrize(("lo", "hi", "gbnf"), [
    (0, 1, "x?"), (1, None, "x+"), (0, None, "x*"), (1, 1, "x"), (0, 0, ""),
    (3, 5, "x{3,5}"), (2, None, "x{2,}"), (0, 2000, "x{0,2000}"), (7, 7, "x{7,7}"),
])
def test_forms(lo: int, hi: int | None, gbnf: str) -> None:
    assert repetition("x", lo, hi) == gbnf


@pytest.mark.parametrize(("lo", "hi", "gbnf"), [
    (0, 5, "( x x-next{0,4} )?"), (1, 1, "x"), (1, None, "x x-next*"), (2, None, "x x-next+"),
    (3, 3, "x x-next{2,2}"), (0, 0, ""), (0, 1, "x?"), (0, None, "( x x-next* )?"),
])
def test_with_a_rule_for_the_next_items(lo: int, hi: int | None, gbnf: str) -> None:
    assert repetition("x", lo, hi, then="x-next") == gbnf


@given(st.integers(0, 12), st.integers(0, 12), st.integers(0, 30))
def test_language(lo: int, extra: int, n: int) -> None:
    """A single-character item's GBNF repetition is also a Python regex of the same language."""
    hi = lo + extra
    assert (re.fullmatch(repetition("[a]", lo, hi), "a" * n) is not None) == (lo <= n <= hi)
    assert (re.fullmatch(repetition("[a]", lo, None), "a" * n) is not None) == (n >= lo)


@pytest.mark.parametrize(("lo", "hi"), [(-1, 3), (5, 4)])
def test_invalid(lo: int, hi: int) -> None:
    with pytest.raises(ValueError):
        repetition("x", lo, hi)


def test_integer_bounds_past_int64() -> None:
    assert integer_bounds({"minimum": -1e30, "maximum": 5}) == (None, 5)  # open below
    assert integer_bounds({"minimum": 0, "maximum": 1e308}) == (0, None)  # open above
    assert integer_bounds({"maximum": math.inf}) is None  # JSON 1e400 decodes to infinity
    assert integer_bounds({"minimum": -math.inf, "exclusiveMaximum": INT64_MAX + 1}) == \
        (None, INT64_MAX)
    lo, hi = integer_bounds({"minimum": math.inf}) or (None, None)
    assert lo is not None and lo > INT64_MAX and hi is None  # core.schema_limits refuses it
    assert integer_bounds({"minimum": INT64_MIN, "maximum": INT64_MAX}) == (INT64_MIN, INT64_MAX)
