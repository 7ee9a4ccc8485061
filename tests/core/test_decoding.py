"""core/decoding.py: the decisions the runner takes from a completion's options."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import decoding
from pollama.core.decoding import Decoding, Next, Sampling
from pollama.core.errors import BadRequest
from pollama.core.options import DEFAULTS


def test_defaults_come_from_the_options_table() -> None:
    plan = Decoding.from_options({})
    assert plan.sampling == Sampling(top_k=40, top_p=0.9, min_p=0.0, typical_p=1.0,
                                     temperature=0.8, repeat_penalty=1.0,
                                     frequency_penalty=0.0, presence_penalty=0.0)
    assert plan == Decoding.from_options(DEFAULTS)
    assert plan.seed is None and plan.num_keep == 4 and plan.stop == ()
    assert plan.num_predict == -1 and plan.repeat_last_n == 64


def test_options_are_read_with_their_types() -> None:
    plan = Decoding.from_options({"top_k": 3.0, "temperature": 0, "seed": 7, "num_keep": -5,
                                  "stop": ["a", "b"], "repeat_last_n": -1})
    assert plan.sampling.top_k == 3 and isinstance(plan.sampling.top_k, int)
    assert plan.sampling.temperature == 0.0 and isinstance(plan.sampling.temperature, float)
    assert plan.seed == 7 and plan.num_keep == 0 and plan.stop == ("a", "b")
    assert plan.penalty_window(512) == 512
    assert Decoding.from_options({"repeat_last_n": -3}).penalty_window(512) == 0
    assert Decoding.from_options({"seed": 0}).seed == 0


@pytest.mark.parametrize(("num_predict", "n_ctx", "n_prompt", "budget"), [
    (-1, 100, 10, 1000),  # "infinite" is 10 × num_ctx, as Ollama's Completion
    (-7, 100, 10, 1000),
    (1001, 100, 10, 1000),
    (1000, 100, 10, 1000),
    (5, 100, 10, 5),
    (0, 100, 10, 0),
    (-2, 100, 10, 90),  # fill the context
    (-2, 100, 120, -20),  # an image prompt over the context: no limit
])
def test_budget(num_predict: int, n_ctx: int, n_prompt: int, budget: int) -> None:
    assert Decoding.from_options({"num_predict": num_predict}).budget(n_ctx, n_prompt) == budget


def test_fit_prompt_keeps_num_keep_and_the_recent_tail() -> None:
    tokens = list(range(20))
    assert decoding.fit_prompt(tokens[:9], 10, 4) == tokens[:9]
    assert decoding.fit_prompt(tokens, 10, 4) == [0, 1, 2, 3, 19]
    assert decoding.fit_prompt(tokens, 10, 0) == [15, 16, 17, 18, 19]
    assert decoding.fit_prompt(tokens, 10, 100) == [0, 1, 2, 3, 4, 19]  # num_keep: half at most
    assert decoding.fit_prompt([], 10, 4) == []


@given(st.lists(st.integers(0, 9), max_size=60), st.integers(4, 40), st.integers(0, 50))
def test_fit_prompt_leaves_room(tokens: list[int], n_ctx: int, num_keep: int) -> None:
    out = decoding.fit_prompt(tokens, n_ctx, num_keep)
    assert len(out) < n_ctx
    if len(tokens) >= n_ctx:
        assert out[-1] == tokens[-1]


def test_shift_drops_the_older_half_after_num_keep() -> None:
    window = list(range(10))
    assert decoding.shift(window, 2) == [0, 1, 6, 7, 8, 9]
    assert decoding.shift(window, 0) == [5, 6, 7, 8, 9]
    assert decoding.shift(window, 100) == [0, 1, 2, 3, 4, 7, 8, 9]


@pytest.mark.parametrize(("kw", "expected"), [
    ({"stopped": True, "generated": 5, "budget": 5, "full": True}, Next.STOP),
    ({"generated": 5, "budget": 5, "full": True}, Next.LENGTH),
    ({"generated": 4, "budget": 5, "full": True}, Next.SHIFT),
    ({"generated": 4, "budget": 5, "full": True, "can_shift": False}, Next.LENGTH),
    ({"generated": 4, "budget": 5}, Next.GO_ON),
    ({"generated": 400, "budget": -20}, Next.GO_ON),
])
def test_next_after_token(kw: dict[str, object], expected: Next) -> None:
    args: dict[str, object] = {"stopped": False, "full": False, "can_shift": True, **kw}
    assert decoding.next_after_token(**args) is expected  # type: ignore[arg-type]


def test_check_context() -> None:
    decoding.check_context(None, 10)
    decoding.check_context([0, 9], 10)
    with pytest.raises(BadRequest, match=r"^invalid context: token 10 is not in the model's "
                                         r"vocabulary \(0 to 9\)$"):
        decoding.check_context([1, 10], 10)
    with pytest.raises(BadRequest, match="token -1"):
        decoding.check_context([-1], 10)


def test_runner_env_spins_briefly_unless_the_user_chose() -> None:
    assert decoding.runner_env({"PATH": "/bin"}) == {"PATH": "/bin", "GOMP_SPINCOUNT": "1000"}
    assert decoding.runner_env({"GOMP_SPINCOUNT": "300000"}) == {"GOMP_SPINCOUNT": "300000"}
    assert decoding.runner_env({"OMP_WAIT_POLICY": "ACTIVE"}) == {"OMP_WAIT_POLICY": "ACTIVE"}
