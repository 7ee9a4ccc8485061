"""/api/embed's token limit and truncation (core/embed.fit), as Ollama's EmbedHandler decides
it (server/routes.go: inputTokensAndContext, adjustTokenLimit, truncateInputToLimit,
embedWithRetry)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import embed
from pollama.core.errors import BadRequest

BOS, EOS = 1, 2
# SmolLM2-135M: trained on 8192 tokens, adds neither BOS nor EOS around an input.
SMOL = embed.TokenFacts(n_ctx=2048, n_batch=512, n_ctx_train=8192, bos=BOS, eos=EOS)
TEXT = list(range(100, 120))  # 20 text tokens, no specials


def _error(tokens: list[int], facts: embed.TokenFacts, **kw: object) -> str:
    with pytest.raises(BadRequest) as err:
        embed.fit(tokens, facts, **kw)  # type: ignore[arg-type]
    assert err.value.status_hint == 400
    return err.value.message


def test_limit_is_min_of_num_ctx_and_trained_less_bos_and_eos_slots() -> None:
    assert embed.context_limit(10, SMOL) == 10
    assert embed.context_limit(100_000, SMOL) == 8192
    assert embed.context_limit(0, SMOL) == 2048  # no num_ctx asked: the runner's context
    # one slot for BOS unless the input starts with it, one for EOS unless it ends with it
    assert embed.token_limit(TEXT, 10, SMOL) == 8
    assert embed.token_limit([BOS, *TEXT], 10, SMOL) == 9
    assert embed.token_limit([BOS, *TEXT, EOS], 10, SMOL) == 10
    assert embed.token_limit([], 10, SMOL) == 10
    # Ollama reads add_bos_token/add_eos_token under the architecture prefix, default true
    no_eos = embed.TokenFacts(n_ctx=2048, n_batch=512, n_ctx_train=8192, bos=BOS, eos=EOS,
                              reserve_eos=False)
    assert embed.token_limit(TEXT, 10, no_eos) == 9


def test_truncates_to_the_limit() -> None:
    assert embed.fit(TEXT, SMOL, num_ctx=10, truncate=True) == TEXT[:8]
    assert embed.fit(TEXT, SMOL, num_ctx=22, truncate=True) == TEXT
    assert embed.fit(TEXT, SMOL, num_ctx=0, truncate=True) == TEXT


def test_num_ctx_one_leaves_no_room() -> None:
    # num_ctx 1: 1 - 2 slots <= 0, whether or not truncation is allowed
    msg = "input after truncation exceeds maximum context length"
    assert _error(TEXT, SMOL, num_ctx=1, truncate=True) == msg
    assert _error(TEXT, SMOL, num_ctx=2, truncate=False) == msg
    assert embed.fit(TEXT, SMOL, num_ctx=3, truncate=True) == TEXT[:1]


def test_truncate_false_refuses_what_does_not_fit() -> None:
    assert _error(TEXT, SMOL, num_ctx=21, truncate=False) == (
        "the input length exceeds the context length")
    assert embed.fit(TEXT, SMOL, num_ctx=22, truncate=False) == TEXT


def test_one_decode_bounds_an_input_retry_truncates_to_the_batch() -> None:
    # Ollama: the runner refuses an input longer than its batch; EmbedHandler retries it cut to
    # num_batch (less the BOS/EOS slots).
    small_batch = embed.TokenFacts(n_ctx=2048, n_batch=12, n_ctx_train=8192, bos=BOS, eos=EOS)
    assert embed.fit(TEXT, small_batch, num_ctx=0, truncate=True) == TEXT[:10]
    assert _error(TEXT, small_batch, num_ctx=0, truncate=False) == (
        "the input length exceeds the context length")


def test_specials_the_model_adds_count_against_the_runner() -> None:
    # A model that adds BOS and EOS: the handler's slots are exactly what it adds.
    llama = embed.TokenFacts(n_ctx=10, n_batch=10, n_ctx_train=8192, bos=BOS, eos=EOS, added=2)
    assert embed.fit(TEXT, llama, num_ctx=0, truncate=True) == TEXT[:8]
    assert embed.fit(TEXT[:8], llama, num_ctx=0, truncate=False) == TEXT[:8]
    # input already starting with BOS: one slot fewer reserved, but the model adds BOS anyway;
    # the retry cannot cut it shorter
    assert _error([BOS, *TEXT], llama, num_ctx=0, truncate=True) == (
        "input exceeds maximum context length and cannot be truncated further")


def test_legacy_has_no_handler_limit_only_the_runners() -> None:
    # /api/embeddings hands the prompt to the runner, which refuses what does not fit
    tiny = embed.TokenFacts(n_ctx=20, n_batch=20, n_ctx_train=8192, bos=BOS, eos=EOS)
    assert embed.fit(TEXT, tiny, num_ctx=None, truncate=False) == TEXT
    assert _error([*TEXT, 5], tiny, num_ctx=None, truncate=False) == (
        "the input length exceeds the context length")


def test_facts_from_gguf_metadata() -> None:
    meta = {"general.architecture": "llama", "tokenizer.ggml.bos_token_id": "1",
            "tokenizer.ggml.eos_token_id": "2", "tokenizer.ggml.add_bos_token": "false",
            "llama.add_eos_token": "false"}
    facts = embed.TokenFacts.from_metadata(meta, n_ctx=64, n_batch=32, n_ctx_train=8192,
                                           added=0)
    assert (facts.bos, facts.eos) == (1, 2)
    # only the architecture-prefixed keys count (tokenizer.ggml.add_bos_token is not read)
    assert facts.reserve_bos is True and facts.reserve_eos is False
    bare = embed.TokenFacts.from_metadata({}, n_ctx=64, n_batch=32, n_ctx_train=0, added=0)
    assert (bare.bos, bare.eos, bare.reserve_bos, bare.reserve_eos) == (0, 0, True, True)
    assert embed.context_limit(100, bare) == 100  # unknown trained length: num_ctx alone


@given(tokens=st.lists(st.integers(0, 9), max_size=40), num_ctx=st.integers(0, 50),
       n_ctx=st.integers(4, 50), n_batch=st.integers(1, 50), added=st.integers(0, 2),
       truncate=st.booleans())
def test_result_is_a_prefix_that_fits_the_runner(tokens: list[int], num_ctx: int, n_ctx: int,
                                                 n_batch: int, added: int,
                                                 truncate: bool) -> None:
    facts = embed.TokenFacts(n_ctx=n_ctx, n_batch=min(n_batch, n_ctx), n_ctx_train=8192,
                             bos=BOS, eos=EOS, added=added)
    try:
        out = embed.fit(tokens, facts, num_ctx=num_ctx, truncate=truncate)
    except BadRequest:
        return
    assert out == tokens[:len(out)]
    assert len(out) + added <= min(facts.n_ctx, facts.n_batch)
    if not truncate:
        assert out == tokens
