"""Continuous batching over one llama.cpp context: several sequences decoded in one
``llama_decode`` per step, one KV sequence id each (Ollama's ``OLLAMA_NUM_PARALLEL``,
llama.cpp server's slots).

Design. The context is the runner's ``llama_cpp.Llama`` created with ``embedding=True``: that
gives it ``n_seq_max`` (256) sequence ids over one *unified* KV cache (``kv_unified``), so the
cells are shared and any sequence may sit anywhere in them. The decoder owns ``n_slots`` of those
ids (0..n_slots-1). A handle is its slot id. Each step builds ``llm._batch`` by hand, since
``LlamaBatch.add_sequence`` always starts at position 0:

- a generating sequence adds its last sampled token, at the next position;
- a sequence still evaluating its prompt adds a chunk of what remains, within the batch's
  ``n_batch`` tokens (generating sequences go first: their latency is what users see);
- logits are on only at a sequence's last token in the batch, and only when that token ends
  its prompt or is a generated one; then the sequence's own sampler chain samples it by that
  batch index.

Sampling. Each sequence has its own chain from ``llm._init_sampler`` (the one
``llm.generate`` builds, so a lone greedy sequence gives exactly ``generate``'s tokens).
``LlamaSampler.sample`` is ``llama_sampler_sample``, which *samples and accepts*: the grammar
and penalty state advance by themselves; calling ``accept`` again would feed every token twice.
As in ``generate``, prompt tokens are not fed to the penalties.

Prefix reuse. A slot remembers the tokens its KV cells hold and keeps them after ``finish``.
``start`` takes the free slot sharing the longest prefix with the new prompt (least recently
used on ties), removes that slot's cells past the common prefix and evaluates only the rest;
at least the last prompt token is always evaluated again, so fresh logits exist.

Invariants:
- ``slot.cached[i]`` is the token at position ``i`` of sequence ``slot`` in the KV cache,
  and nothing of that sequence lies beyond ``len(slot.cached)``;
- an active sequence's ``pending`` tokens (the prompt tail, or the one sampled token) are
  not in the cache yet; they go at positions ``len(cached)`` and on;
- ``len(cached) <= slot_ctx`` (``step`` refuses to go past it), so the cells in use, free
  slots' remembered prefixes included, never exceed ``n_slots * slot_ctx <= n_ctx`` and
  ``llama_decode`` always finds room. ``full(handle)`` says that prompt and generated tokens
  fill ``slot_ctx``, as the runner's ``len(window) >= n_ctx``: the caller stops the sequence
  (or shifts it, which this module does not do).

Numerics (measured with SmolLM2 on CPU, tests/runners/test_batch_decoder.py). With
``flash_attn=True`` a sequence's logits are bit-identical to ``llm.generate`` of it alone,
whatever else is in the batch or the cache, while its cells lie in position order (after
``seq_rm`` frees cells, new tokens may fill those holes and attention sums in another order).
Without flash attention (POLLAMA_FLASH_ATTENTION=0; on by default since this finding) the
CPU attention depends on the batch and the cells' places: logits move by up to ~1.4, enough
to flip a greedy near-tie or a seeded draw. Batched runs are then reproducible only for the
same schedule.

The decoder owns the context's KV cache: do not call ``llm.generate``/``llm.eval`` (they use
sequence 0 and trim it) or clear the cache while it is in use, or call ``reset_cache`` after.
(``LlamaContext.kv_cache_seq_rm`` maps a negative seq_id to 0, not to "every sequence".)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class _Slot:
    cached: list[int] = field(default_factory=list)  # tokens held by the KV cells
    last_used: int = 0


@dataclass
class _Seq:
    sampler: Any
    pending: list[int]  # tokens to evaluate: the prompt tail, then the last sampled token
    reused: int  # leading prompt tokens found in the slot's cache
    generating: bool = False  # the prompt is done
    out_index: int = -1  # batch index of its logits in the last step, -1 if none


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class BatchDecoder:
    """Decode up to ``n_slots`` sequences of at most ``slot_ctx`` positions together in
    ``llm``'s context, which must hold ``n_ctx >= n_slots * slot_ctx`` cells and
    ``n_seq_max >= n_slots`` sequence ids (``embedding=True`` gives 256 over a unified cache).
    """

    def __init__(self, llm: Any, n_slots: int, slot_ctx: int) -> None:
        import llama_cpp

        ctx = llm._ctx.ctx
        if n_slots < 1 or slot_ctx < 2:
            raise ValueError("need at least one slot of at least two positions")
        if n_slots > llama_cpp.llama_n_seq_max(ctx):
            raise ValueError(f"the context has only {llama_cpp.llama_n_seq_max(ctx)} sequence ids")
        if n_slots * slot_ctx > llama_cpp.llama_n_ctx(ctx):
            raise ValueError(f"n_ctx {llama_cpp.llama_n_ctx(ctx)} < n_slots * slot_ctx")
        if slot_ctx > llama_cpp.llama_n_ctx_seq(ctx):
            raise ValueError("slot_ctx exceeds the context's positions per sequence "
                             "(a context without kv_unified splits n_ctx among n_seq_max)")
        self.llm = llm
        self.slot_ctx = slot_ctx
        self.slots = [_Slot() for _ in range(n_slots)]
        self.active: dict[int, _Seq] = {}  # insertion order: first started, first served
        self.prompt_tokens_evaluated = 0
        self._clock = 0

    def start(self, prompt_tokens: list[int], sampling: dict[str, Any], seed: int) -> int:
        """Add a sequence; returns its handle. ``sampling`` holds ``llm._init_sampler``'s
        arguments (top_k, top_p, min_p, typical_p, temp, repeat_penalty, frequency_penalty,
        presence_penalty, grammar); ``seed`` seeds its dist sampler."""
        prompt = list(prompt_tokens)
        if not prompt or len(prompt) >= self.slot_ctx:
            raise ValueError(f"a prompt needs 1 to {self.slot_ctx - 1} tokens, got {len(prompt)}")
        free = [i for i in range(len(self.slots)) if i not in self.active]
        if not free:
            raise RuntimeError("no free slot")
        handle = max(free, key=lambda i: (_common_prefix(self.slots[i].cached, prompt),
                                          -self.slots[i].last_used))
        slot = self.slots[handle]
        keep = min(_common_prefix(slot.cached, prompt), len(prompt) - 1)
        mem = self.llm._ctx
        # Removing a tail can fail (recurrent/SWA memories); removing a whole sequence never does.
        if not mem.kv_cache_seq_rm(handle, keep, -1):
            mem.kv_cache_seq_rm(handle, 0, -1)
            keep = 0
        del slot.cached[keep:]
        self._clock += 1
        slot.last_used = self._clock
        saved_seed = self.llm._seed
        self.llm.set_seed(seed)  # _init_sampler seeds the dist sampler from llm._seed
        try:
            sampler = self.llm._init_sampler(**sampling)
        finally:
            self.llm.set_seed(saved_seed)
        self.active[handle] = _Seq(sampler=sampler, pending=prompt[keep:], reused=keep)
        return handle

    def reused(self, handle: int) -> int:
        """How many leading prompt tokens of ``handle`` were found in its slot's cache."""
        return self.active[handle].reused

    def full(self, handle: int) -> bool:
        """True when the sequence cannot take another token within ``slot_ctx`` positions
        (as the runner's ``len(window) >= n_ctx``: prompt and tokens generated so far)."""
        seq = self.active[handle]
        return len(self.slots[handle].cached) + len(seq.pending) >= self.slot_ctx

    def finish(self, handle: int, keep_cache: bool = True) -> None:
        """Free the slot. Its KV cells stay for prefix reuse unless ``keep_cache`` is false."""
        del self.active[handle]
        if not keep_cache:
            self.llm._ctx.kv_cache_seq_rm(handle, 0, -1)
            self.slots[handle].cached.clear()

    def reset_cache(self) -> None:
        """Forget every slot's cache (after someone else cleared or used the KV cache)."""
        if self.active:
            raise RuntimeError("sequences are active")
        for i, slot in enumerate(self.slots):
            self.llm._ctx.kv_cache_seq_rm(i, 0, -1)
            slot.cached.clear()

    def step(self) -> list[tuple[int, int]]:
        """One ``llama_decode`` over every active sequence; returns ``(handle, token)`` for
        each sequence that sampled a token (its prompt is done)."""
        if not self.active:
            return []
        llm = self.llm
        b = llm._batch.batch
        budget = llm.n_batch
        plan: list[tuple[int, _Seq, list[int], bool]] = []  # handle, seq, tokens, sample
        for handle, seq in self.active.items():
            seq.out_index = -1
            if seq.generating:
                if len(self.slots[handle].cached) >= self.slot_ctx:
                    raise RuntimeError(f"sequence {handle} is full: finish it")
                plan.append((handle, seq, list(seq.pending), True))
                budget -= 1
        for handle, seq in self.active.items():
            if not seq.generating and budget > 0:
                chunk = seq.pending[:budget]
                plan.append((handle, seq, chunk, len(chunk) == len(seq.pending)))
                budget -= len(chunk)
        n = 0
        for handle, seq, toks, sample in plan:
            pos = len(self.slots[handle].cached)
            for j, tok in enumerate(toks):
                b.token[n] = tok
                b.pos[n] = pos + j
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = handle
                b.logits[n] = sample and j == len(toks) - 1
                n += 1
            seq.out_index = n - 1 if sample else -1
        b.n_tokens = n
        try:
            llm._ctx.decode(llm._batch)
        except RuntimeError:
            # No KV slot (1) or a bad batch (-1) leave the cache as it was; an abort or a
            # fatal error keeps the ubatches done so far: drop them to keep the invariant.
            for handle, _, _, _ in plan:
                llm._ctx.kv_cache_seq_rm(handle, len(self.slots[handle].cached), -1)
            raise
        out: list[tuple[int, int]] = []
        for handle, seq, toks, sample in plan:
            self.slots[handle].cached.extend(toks)
            if not seq.generating:
                self.prompt_tokens_evaluated += len(toks)
            del seq.pending[:len(toks)]
            if sample:
                tok = seq.sampler.sample(llm._ctx, seq.out_index)  # samples *and* accepts
                seq.generating = True
                seq.pending = [tok]
                out.append((handle, tok))
        return out

    def logits(self, handle: int) -> np.ndarray:
        """A copy of the logits ``handle``'s last token was sampled from (valid until the
        next ``step``)."""
        import llama_cpp

        seq = self.active[handle]
        if seq.out_index < 0:
            raise ValueError("the sequence sampled no token in the last step")
        ptr = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, seq.out_index)
        return np.ctypeslib.as_array(ptr, shape=(self.llm.n_vocab(),)).copy()
