"""core/timefmt.py: RFC 3339 timestamps as Go's time.Time marshals them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pollama.core import timefmt


def test_rfc3339() -> None:
    assert timefmt.rfc3339(0) == "1970-01-01T00:00:00Z"
    assert timefmt.rfc3339(1_500_000_000) == "1970-01-01T00:00:01.5Z"
    assert timefmt.rfc3339(123) == "1970-01-01T00:00:00.000000123Z"
    assert timefmt.rfc3339(0, 3600) == "1970-01-01T01:00:00+01:00"
    assert timefmt.rfc3339(0, -5 * 3600) == "1969-12-31T19:00:00-05:00"


@given(st.integers(0, 4_000_000_000 * 10**9), st.sampled_from([0, 3600, -19800, 34200]))
def test_rfc3339_round_trip(ns: int, offset: int) -> None:
    assert timefmt.parse_rfc3339(timefmt.rfc3339(ns, offset)) == ns
