"""runners/batch.py decodes several sequences in one llama.cpp batch (continuous batching) on
the real SmolLM2-135M; every output is checked against ``llm.generate`` of that prompt alone
on a fresh Llama built as the runner builds it.

Two configurations run every test: the runner's (flash attention off, n_batch 512) and flash
attention on with n_batch 16 (prompts then go in chunks, mixed with other sequences' tokens).

Numerics, as measured here. With flash attention a sequence's logits are bit-identical to its
solo run, whatever its neighbours, as long as its KV cells lie in position order (after a
``seq_rm`` frees cells, later tokens may fill those holes and the attention sums in another
order). Without flash attention, llama.cpp's CPU attention result depends on the batch and on
where the cells sit in the cache: logits move by up to ~1.4, which flips a greedy choice when
the solo run had a near-tie. That is no leak (same code, bit-exact with flash attention), so
the runner configuration checks tokens up to such a near-tie and logits within DRIFT.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from pollama.runners.batch import BatchDecoder

SLOTS = 4
SLOT_CTX = 128
N = 24  # tokens generated per sequence
DRIFT = 3.0  # without flash attention, how far batching may move a logit (seen: up to 1.4)
GREEDY: dict[str, Any] = {"top_k": 1, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0,
                          "temp": 0.0, "repeat_penalty": 1.0, "frequency_penalty": 0.0,
                          "presence_penalty": 0.0, "grammar": None}
SAMPLED: dict[str, Any] = {**GREEDY, "top_k": 40, "top_p": 0.9, "temp": 0.8,
                           "repeat_penalty": 1.1}
TEXTS = ["What is the capital of France?", "Write a haiku about the sea.",
         "List three prime numbers.", "Name a famous painter and one of their paintings."]
CONFIGS: dict[str, dict[str, Any]] = {
    "runner": {"flash_attn": False, "n_batch": 512},
    "flash_attn-n_batch16": {"flash_attn": True, "n_batch": 16},
}


def make_llama(path: str, n_ctx: int, *, flash_attn: bool, n_batch: int = 512) -> Any:
    """As runners/llama_runner.py ``_load`` does (plus the flash attention switch)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=n_batch, n_threads=2,
                          n_threads_batch=2, embedding=True, flash_attn=flash_attn,
                          pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, verbose=False)
    llama_cpp.llama_set_embeddings(llm._ctx.ctx, False)
    return llm


def chat(llm: Any, text: str) -> list[int]:
    prompt = f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    return list(llm.tokenize(prompt.encode(), add_bos=True, special=True))


@pytest.fixture(scope="module", params=list(CONFIGS))
def config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return CONFIGS[request.param]


@pytest.fixture(scope="module")
def llm(smollm2_gguf: str, config: dict[str, Any]) -> Iterator[Any]:
    model = make_llama(smollm2_gguf, SLOTS * SLOT_CTX, **config)
    yield model
    model.close()


@pytest.fixture
def decoder(llm: Any) -> Iterator[BatchDecoder]:
    dec = BatchDecoder(llm, SLOTS, SLOT_CTX)
    yield dec
    check_cache(dec)
    for h in list(dec.active):
        dec.finish(h)
    dec.reset_cache()


_solo_memo: dict[Any, tuple[list[int], list[np.ndarray]]] = {}


@pytest.fixture
def solo(smollm2_gguf: str, config: dict[str, Any]) -> Any:
    """``solo(tokens, n, sampling, seed) -> (tokens, logits)``: ``llm.generate`` on a fresh
    Llama (n_batch 512) holding only this prompt."""
    import llama_cpp

    def run(tokens: list[int], n: int = N, sampling: dict[str, Any] = GREEDY,
            seed: int = 0, stop_at_eog: bool = False) -> tuple[list[int], list[np.ndarray]]:
        key = (tuple(tokens), n, config["flash_attn"], seed, stop_at_eog,
               tuple((k, getattr(v, "_grammar", v)) for k, v in sorted(sampling.items())))
        if key not in _solo_memo:
            ref = make_llama(smollm2_gguf, 512, flash_attn=config["flash_attn"])
            ref.set_seed(seed)
            out: list[int] = []
            logits: list[np.ndarray] = []
            for tok in ref.generate(tokens, **sampling):
                ptr = llama_cpp.llama_get_logits_ith(ref._ctx.ctx, -1)
                logits.append(np.ctypeslib.as_array(ptr, shape=(ref.n_vocab(),)).copy())
                out.append(tok)
                if len(out) == n or (stop_at_eog and is_eog(ref, tok)):
                    break
            ref.close()
            _solo_memo[key] = (out, logits)
        return _solo_memo[key]

    return run


def is_eog(llm: Any, tok: int) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok))


def check_cache(dec: BatchDecoder) -> None:
    """The invariant: each slot's remembered tokens are exactly its KV positions 0..len-1."""
    import llama_cpp

    mem = dec.llm._ctx.memory
    for i, slot in enumerate(dec.slots):
        assert llama_cpp.llama_memory_seq_pos_max(mem, i) == len(slot.cached) - 1
        if slot.cached:
            assert llama_cpp.llama_memory_seq_pos_min(mem, i) == 0


def drive(dec: BatchDecoder, want: dict[int, int], got: dict[int, list[int]],
          logits: dict[int, list[np.ndarray]] | None = None) -> int:
    """Step until each handle in ``want`` has that many tokens, finishing it then; returns
    the number of steps."""
    steps = 0
    while want:
        steps += 1
        for h, tok in dec.step():
            if h not in want:
                continue
            got.setdefault(h, []).append(tok)
            if logits is not None:
                logits.setdefault(h, []).append(dec.logits(h))
            if len(got[h]) == want[h]:
                dec.finish(h)
                del want[h]
    return steps


def assert_matches_solo(config: dict[str, Any], tokens: list[int], logits: list[np.ndarray],
                        solo_run: tuple[list[int], list[np.ndarray]],
                        bitwise: int | None = None) -> None:
    """With flash attention: the solo tokens, and the solo logits bit for bit (the first
    ``bitwise`` of them: once cells were removed, new cells may fill the holes and attention
    sums in another order). Without: logits within DRIFT, and the tokens the same until the
    solo run faced a near-tie the drift may flip; from there on they are two other texts."""
    want, want_logits = solo_run
    assert 0 < len(tokens) <= len(want)
    if config["flash_attn"]:
        assert tokens == want[:len(tokens)]
        n = len(tokens) if bitwise is None else bitwise
        for x, y in zip(logits[:n], want_logits[:n], strict=True):
            assert np.array_equal(x, y)
        return
    for k, tok in enumerate(tokens):
        assert np.abs(logits[k] - want_logits[k]).max() < DRIFT
        if tok != want[k]:
            second, first = np.sort(want_logits[k])[-2:]
            assert first - second < 2 * DRIFT
            return


def test_prompts_started_together_match_solo_greedy(decoder: BatchDecoder, solo: Any,
                                                    config: dict[str, Any]) -> None:
    prompts = [chat(decoder.llm, t) for t in TEXTS[:3]]
    handles = [decoder.start(p, GREEDY, 0) for p in prompts]
    assert sorted(handles) == [0, 1, 2]
    got: dict[int, list[int]] = {}
    logits: dict[int, list[np.ndarray]] = {}
    drive(decoder, {h: N for h in handles}, got, logits)
    for h, p in zip(handles, prompts):
        assert_matches_solo(config, got[h], logits[h], solo(p))
        assert [int(np.argmax(x)) for x in logits[h]] == got[h]
    assert decoder.prompt_tokens_evaluated == sum(map(len, prompts))


def test_staggered_starts_match_solo_greedy(decoder: BatchDecoder, solo: Any,
                                            config: dict[str, Any]) -> None:
    """Sequences start while others are mid-prompt or mid-generation; one finishes early and
    its slot is taken again at once."""
    llm = decoder.llm
    prompts = [chat(llm, t) for t in TEXTS]
    handles: list[int] = []  # by prompt index
    got: list[list[int]] = []
    logits: list[list[np.ndarray]] = []
    want: dict[int, tuple[int, int]] = {}  # active handle -> (prompt index, tokens wanted)

    def start(n: int) -> None:
        h = decoder.start(prompts[len(handles)], GREEDY, 0)
        want[h] = (len(handles), n)
        handles.append(h)
        got.append([])
        logits.append([])

    start(N)
    waiting = 0  # steps the third sequence spent on its prompt
    clean: list[int] = []
    while want:
        for h, tok in decoder.step():
            i, n = want[h]
            got[i].append(tok)
            logits[i].append(decoder.logits(h))
            if len(got[i]) == n:
                decoder.finish(h)
                del want[h]
        check_cache(decoder)
        if len(handles) == 1 and len(got[0]) == 5:
            start(8)  # finishes early
        elif len(handles) == 2 and len(got[0]) == 6:
            start(N)
        elif len(handles) == 3 and not got[2]:
            waiting += 1
        elif len(handles) == 3 and handles[1] not in want:
            clean = [len(g) for g in got] + [N]  # the fourth cuts the third's tail: holes
            start(N)
    assert handles[3] == handles[1]  # the free slot sharing the chat template's prefix
    assert [len(g) for g in got] == [N, 8, N, N]
    if config["n_batch"] < len(prompts[2]):
        assert waiting >= 1  # its prompt went in chunks, next to the others' tokens
    for i in range(4):
        assert_matches_solo(config, got[i], logits[i], solo(prompts[i]), bitwise=clean[i])


def test_neighbours_do_not_change_logits(llm: Any, config: dict[str, Any]) -> None:
    """A sequence's logits do not depend on what its neighbours in the batch say, nor on
    what other slots hold in the KV cache: the same bits with flash attention, within DRIFT
    without."""
    def same(x: np.ndarray, y: np.ndarray) -> bool:
        if config["flash_attn"]:
            return bool(np.array_equal(x, y))
        return bool(np.abs(x - y).max() < DRIFT)

    runs: list[list[np.ndarray]] = []
    for neighbours in (TEXTS[1:3], TEXTS[2:4], ["Hi", "Tell me a joke about cats please."]):
        dec = BatchDecoder(llm, SLOTS, SLOT_CTX)
        a = dec.start(chat(llm, TEXTS[0]), GREEDY, 0)
        for t in neighbours:
            dec.start(chat(llm, t), GREEDY, 0)
        logits: dict[int, list[np.ndarray]] = {}
        drive(dec, {h: 8 for h in dec.active}, {}, logits)
        runs.append(logits[a])
        dec.reset_cache()
    for other in runs[1:]:
        for x, y in zip(runs[0], other, strict=True):
            assert same(x, y)
    # Alone, next to the cells a finished neighbour left behind, and alone in a clean cache.
    alone: list[list[np.ndarray]] = []
    for leave_neighbour in (True, False):
        dec = BatchDecoder(llm, SLOTS, SLOT_CTX)
        if leave_neighbour:
            drive(dec, {dec.start(chat(llm, TEXTS[3]), GREEDY, 0): 8}, {})
        logits = {}
        drive(dec, {dec.start(chat(llm, TEXTS[0]), GREEDY, 0): 8}, {}, logits)
        alone.append(next(iter(logits.values())))
        dec.reset_cache()
    for x, y in zip(*alone, strict=True):
        assert same(x, y)


def test_prefix_reuse_evaluates_only_the_new_tail(decoder: BatchDecoder, solo: Any,
                                                  config: dict[str, Any]) -> None:
    llm = decoder.llm
    first = chat(llm, TEXTS[0])
    other = chat(llm, TEXTS[1])
    h1 = decoder.start(first, GREEDY, 0)
    h2 = decoder.start(other, GREEDY, 0)
    got: dict[int, list[int]] = {}
    logits: dict[int, list[np.ndarray]] = {}
    drive(decoder, {h1: N, h2: N}, got, logits)
    assert_matches_solo(config, got[h1], logits[h1], solo(first))
    # The next turn of the conversation: the first prompt, its answer, a new question.
    follow = llm.tokenize(b"<|im_end|>\n<|im_start|>user\nAnd of Italy?<|im_end|>\n"
                          b"<|im_start|>assistant\n", add_bos=False, special=True)
    second = first + got[h1] + list(follow)
    before = decoder.prompt_tokens_evaluated
    h = decoder.start(second, GREEDY, 0)
    assert h == h1  # the slot holding the prefix, not the least recently used one
    # The slot holds the prompt and all answer tokens but the last (sampled, never evaluated).
    assert decoder.reused(h) == len(first) + N - 1
    out: dict[int, list[int]] = {}
    logits = {}
    drive(decoder, {h: N}, out, logits)
    # Evaluated: the answer's last token and the new question.
    assert decoder.prompt_tokens_evaluated - before == len(follow) + 1
    assert_matches_solo(config, out[h], logits[h], solo(second))
    check_cache(decoder)
    # The same prompt again: only its last token is evaluated, for fresh logits.
    before = decoder.prompt_tokens_evaluated
    h = decoder.start(second, GREEDY, 0)
    assert decoder.reused(h) == len(second) - 1
    out, logits = {}, {}
    drive(decoder, {h: N}, out, logits)
    assert decoder.prompt_tokens_evaluated - before == 1
    assert_matches_solo(config, out[h], logits[h], solo(second))
    # A prompt diverging inside the cached one: the slot's tail is cut at the divergence.
    third = chat(llm, "What is the capital of Spain?")
    common = next(i for i, (x, y) in enumerate(zip(first, third)) if x != y)
    before = decoder.prompt_tokens_evaluated
    h = decoder.start(third, GREEDY, 0)
    assert h == h1
    kept = decoder.reused(h)
    assert kept == common
    out, logits = {}, {}
    drive(decoder, {h: N}, out, logits)
    assert decoder.prompt_tokens_evaluated - before == len(third) - kept
    assert_matches_solo(config, out[h], logits[h], solo(third))


def test_grammar_constrains_only_its_sequence(decoder: BatchDecoder, solo: Any,
                                              config: dict[str, Any]) -> None:
    from llama_cpp.llama_grammar import LlamaGrammar

    llm = decoder.llm
    grammar = LlamaGrammar.from_string('root ::= "yes" | "no"', verbose=False)
    constrained = {**GREEDY, "grammar": grammar}
    question = chat(llm, "Is the sky green? Answer yes or no.")
    free = chat(llm, TEXTS[0])
    hg = decoder.start(question, constrained, 0)
    hf = decoder.start(free, GREEDY, 0)
    got: dict[int, list[int]] = {hg: [], hf: []}
    free_logits: list[np.ndarray] = []
    while decoder.active:
        for h, tok in decoder.step():
            got[h].append(tok)
            if h == hf:
                free_logits.append(decoder.logits(h))
            done = (is_eog(llm, tok) or len(got[h]) == 8) if h == hg else len(got[h]) == N
            if done:
                decoder.finish(h)
    assert is_eog(llm, got[hg][-1])  # the grammar is complete: only an end token was allowed
    assert llm.detokenize(got[hg][:-1]) in (b"yes", b"no")
    if config["flash_attn"]:
        assert got[hg] == solo(question, 8, constrained, stop_at_eog=True)[0]
    assert_matches_solo(config, got[hf], free_logits, solo(free))
    assert not any(is_eog(llm, t) for t in got[hf][:4])  # the free one says more than yes/no


def test_seeded_sampling_is_reproducible(decoder: BatchDecoder, solo: Any,
                                         config: dict[str, Any]) -> None:
    prompts = [chat(decoder.llm, t) for t in TEXTS[:2]]
    runs: list[list[list[int]]] = []
    for _ in range(2):
        # The same prompt and seed twice in one batch, a different seed, another prompt.
        handles = [decoder.start(prompts[0], SAMPLED, 42), decoder.start(prompts[0], SAMPLED, 42),
                   decoder.start(prompts[0], SAMPLED, 7), decoder.start(prompts[1], SAMPLED, 42)]
        got: dict[int, list[int]] = {}
        drive(decoder, {h: N for h in handles}, got)
        runs.append([got[h] for h in handles])
        decoder.reset_cache()
    assert runs[0] == runs[1]
    same, twin, other_seed, _ = runs[0]
    assert same != other_seed
    if config["flash_attn"]:  # bit-identical logits: the same draws as alone
        assert same == twin  # each sequence has its own generator
        assert same == solo(prompts[0], N, SAMPLED, 42)[0]
        assert runs[0][3] == solo(prompts[1], N, SAMPLED, 42)[0]


def test_full_and_limits(llm: Any) -> None:
    with pytest.raises(ValueError, match="n_ctx"):
        BatchDecoder(llm, SLOTS + 1, SLOT_CTX)
    with pytest.raises(ValueError, match="sequence ids"):
        BatchDecoder(llm, 300, 2)
    dec = BatchDecoder(llm, 2, 40)
    prompt = chat(llm, TEXTS[0])
    with pytest.raises(ValueError):
        dec.start(list(range(40)), GREEDY, 0)
    with pytest.raises(ValueError):
        dec.start([], GREEDY, 0)
    h = dec.start(prompt, GREEDY, 0)
    assert not dec.full(h)
    with pytest.raises(ValueError):
        dec.logits(h)  # nothing sampled yet
    got: list[int] = []
    while not dec.full(h):
        got += [tok for _, tok in dec.step()]
    assert len(prompt) + len(got) == 40  # as the runner's len(window) >= n_ctx
    dec.step()  # the last sampled token still fits, at position 39
    check_cache(dec)
    with pytest.raises(RuntimeError, match="full"):
        dec.step()
    dec.start(prompt, GREEDY, 0)
    with pytest.raises(RuntimeError, match="no free slot"):
        dec.start(prompt, GREEDY, 0)
    for handle in list(dec.active):
        dec.finish(handle, keep_cache=False)
    assert all(not s.cached for s in dec.slots)
    check_cache(dec)
