"""Continuous batching (runners/batch.py) against one request after another: N different chat
prompts, each decoded to --tokens greedy tokens, either all together with BatchDecoder or in
turn with ``llm.generate``. Prints the aggregate tokens/s of both and their ratio, per N.

    python bench/batch_decode.py [--gguf PATH] [--tokens 64] [--parallel 1,2,4] [--repeats 3]
                                 [--slot-ctx 256] [--flash-attn]

Both sides use a Llama built as the runner builds it (embedding=True, so several sequence ids
over one unified KV cache), evaluate their whole prompts (no prefix reuse between runs) and are
timed from the first prompt token to the last generated one. The sequential side has one
request's context (n_ctx = slot_ctx, as today); the batched side N of them (n_ctx = N *
slot_ctx, as Ollama sizes OLLAMA_NUM_PARALLEL): a bigger KV cache costs attention time.
Without --gguf it uses the test model cache (~/.cache/pollama-test), fetching it if needed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

PROMPTS = ["Write a short story about a robot who learns to paint.",
           "Explain how a bicycle stays upright.",
           "List five uses for a paperclip.",
           "Describe the water cycle to a ten-year-old."]
GREEDY: dict[str, Any] = {"top_k": 40, "top_p": 0.9, "min_p": 0.0, "typical_p": 1.0,
                          "temp": 0.0, "repeat_penalty": 1.0, "frequency_penalty": 0.0,
                          "presence_penalty": 0.0, "grammar": None}


def make_llama(gguf: str, n_ctx: int, flash_attn: bool) -> Any:
    import llama_cpp

    threads = len(os.sched_getaffinity(0))  # what pollama's runner uses by default
    llm = llama_cpp.Llama(model_path=gguf, n_ctx=n_ctx, n_batch=512, n_threads=threads,
                          n_threads_batch=threads, embedding=True, flash_attn=flash_attn,
                          pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, verbose=False)
    llama_cpp.llama_set_embeddings(llm._ctx.ctx, False)
    return llm


def sequential(llm: Any, prompts: list[list[int]], tokens: int) -> float:
    start = time.perf_counter()
    for p in prompts:
        llm.reset()  # no prefix reuse from the previous prompt
        for n, _tok in enumerate(llm.generate(p, **GREEDY), 1):
            if n == tokens:
                break
    return len(prompts) * tokens / (time.perf_counter() - start)


def batched(dec: Any, prompts: list[list[int]], tokens: int) -> float:
    dec.reset_cache()  # no prefix reuse from the previous run
    start = time.perf_counter()
    left = {dec.start(p, GREEDY, 0): tokens for p in prompts}
    while left:
        for h, _tok in dec.step():
            left[h] -= 1
            if left[h] == 0:
                dec.finish(h)
                del left[h]
    return len(prompts) * tokens / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--parallel", default="1,2,4")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--slot-ctx", type=int, default=256)
    ap.add_argument("--flash-attn", action="store_true")
    args = ap.parse_args()
    gguf = args.gguf
    if gguf is None:
        from tests.conftest import smollm2_gguf

        gguf = smollm2_gguf.__wrapped__()  # type: ignore[attr-defined]
    from pollama.runners.batch import BatchDecoder

    counts = [int(x) for x in args.parallel.split(",")]
    solo = make_llama(gguf, args.slot_ctx, args.flash_attn)
    texts = [PROMPTS[i % len(PROMPTS)] for i in range(max(counts))]
    prompts = [solo.tokenize(f"<|im_start|>user\n{t}<|im_end|>\n<|im_start|>assistant\n".encode(),
                             add_bos=True, special=True) for t in texts]
    sequential(solo, prompts[:1], 8)  # warm-up: compute buffers
    print(f"{args.tokens} greedy tokens per sequence, flash_attn={args.flash_attn}, "
          f"threads={len(os.sched_getaffinity(0))}, median of {args.repeats}; sequential: "
          f"n_ctx {args.slot_ctx}, batched: n_ctx N * {args.slot_ctx} (as OLLAMA_NUM_PARALLEL)")
    print(f"{'N':>3} {'sequential tok/s':>17} {'batched tok/s':>14} {'ratio':>6}")
    for n in counts:
        many = make_llama(gguf, n * args.slot_ctx, args.flash_attn)
        dec = BatchDecoder(many, n, args.slot_ctx)
        batched(dec, prompts[:n], 8)  # warm-up
        seq = statistics.median(sequential(solo, prompts[:n], args.tokens)
                                for _ in range(args.repeats))
        bat = statistics.median(batched(dec, prompts[:n], args.tokens)
                                for _ in range(args.repeats))
        print(f"{n:>3} {seq:>17.1f} {bat:>14.1f} {bat / seq:>6.2f}")
        many.close()


if __name__ == "__main__":
    main()
