"""core/json_grammar.int_range: the GBNF must match exactly the canonical integers in range.
Checked by translating the (small) GBNF subset it emits into a Python regex."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core.json_grammar import int_range, integer_bounds

_TOKEN = re.compile(r'\s*("[^"]*"|\[[^\]]*\]|\{\d+(?:,\d*)?\}|\(|\)|\|)')


def to_regex(gbnf: str) -> re.Pattern[str]:
    parts: list[str] = []
    pos = 0
    while pos < len(gbnf):
        m = _TOKEN.match(gbnf, pos)
        assert m, f"unexpected GBNF at {gbnf[pos:]!r}"
        tok = m.group(1)
        if tok.startswith('"'):
            parts.append(re.escape(tok[1:-1]))
        elif tok == "(":
            parts.append("(?:")
        else:
            parts.append(tok)
        pos = m.end()
        if gbnf[pos:].strip() == "":
            break
    return re.compile("".join(parts))


def accepts(gbnf: str, text: str) -> bool:
    return to_regex(gbnf).fullmatch(text) is not None


@pytest.mark.parametrize("lo, hi", [
    (0, 120), (1, 9), (10, 99), (-5, 5), (-120, -3), (0, 0), (7, 7), (15, 1234),
    (None, 120), (None, -7), (None, 0), (3, None), (0, None), (-42, None), (250, None),
])
def test_examples(lo: int | None, hi: int | None) -> None:
    g = int_range(lo, hi)
    for n in range(-1500, 1500):
        expected = (lo is None or n >= lo) and (hi is None or n <= hi)
        assert accepts(g, str(n)) == expected, (g, n)
    for bad in ("007", "+5", "", "1.0", "--1", "00"):
        assert not accepts(g, bad), (g, bad)
    # "-0" is JSON for 0: accepted exactly when 0 is in range and negatives are written
    if accepts(g, "-0"):
        assert (lo is None or lo <= 0) and (hi is None or hi >= 0)


@given(st.integers(-10**6, 10**6), st.integers(0, 10**6), st.integers(-10**7, 10**7))
def test_bounded_ranges(lo: int, width: int, n: int) -> None:
    hi = lo + width
    assert accepts(int_range(lo, hi), str(n)) == (lo <= n <= hi)


@given(st.integers(-10**6, 10**6), st.integers(-10**7, 10**7))
def test_half_open_ranges(bound: int, n: int) -> None:
    assert accepts(int_range(bound, None), str(n)) == (n >= bound)
    assert accepts(int_range(None, bound), str(n)) == (n <= bound)


def test_bounds_from_schema() -> None:
    assert integer_bounds({"type": "integer"}) is None
    assert integer_bounds({"minimum": 0, "maximum": 120}) == (0, 120)
    assert integer_bounds({"exclusiveMinimum": 0, "exclusiveMaximum": 10}) == (1, 9)
    assert integer_bounds({"minimum": 0.5, "maximum": 9.5}) == (1, 9)
    assert integer_bounds({"exclusiveMinimum": True}) is None  # draft-4 booleans ignored
    with pytest.raises(ValueError):
        int_range(None, None)
    with pytest.raises(ValueError):
        int_range(5, 4)
