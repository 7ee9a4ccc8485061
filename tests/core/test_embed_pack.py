"""Packing embedding inputs into decode batches (core/embed.pack_batches)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pollama.core.embed import pack_batches


def test_examples() -> None:
    assert pack_batches([], 8, 4) == []
    assert pack_batches([[1, 2], [3], [4, 5, 6]], 8, 4) == [[[1, 2], [3], [4, 5, 6]]]
    assert pack_batches([[1, 2], [3], [4, 5, 6]], 4, 4) == [[[1, 2], [3]], [[4, 5, 6]]]
    assert pack_batches([[1], [2], [3]], 100, 2) == [[[1], [2]], [[3]]]
    # an oversized sequence (the runner truncates first) still gets a group of its own
    assert pack_batches([[1], list(range(9)), [2]], 4, 4) == [[[1]], [list(range(9))], [[2]]]


@given(st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=12), max_size=30),
       st.integers(1, 40), st.integers(1, 6))
def test_properties(seqs: list[list[int]], max_tokens: int, max_seqs: int) -> None:
    groups = pack_batches(seqs, max_tokens, max_seqs)
    assert [s for g in groups for s in g] == seqs  # order kept, nothing lost
    for g in groups:
        assert 1 <= len(g) <= max_seqs
        assert len(g) == 1 or sum(map(len, g)) <= max_tokens
    # greedy: a group is closed only when the next sequence would not fit in it
    for g, nxt in zip(groups, groups[1:]):
        assert len(g) == max_seqs or sum(map(len, g)) + len(nxt[0]) > max_tokens
