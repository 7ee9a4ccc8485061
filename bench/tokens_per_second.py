"""Decode speed of `pollama run` (server + runner process + HTTP) against llama-cpp-python
in-process, on the same model, prompt and greedy settings. Prints both and their ratio.

    python bench/tokens_per_second.py [--gguf PATH] [--tokens 128] [--repeats 3]

Without --gguf it uses the test model cache (~/.cache/pollama-test), fetching it if needed.
Starts its own `pollama serve` on a free port with a temporary model store.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

PROMPT = "Write a short story about a robot who learns to paint."


def in_process_rate(llm: Any, toks: list[int], tokens: int) -> float:
    """Decode tokens/s of llama-cpp-python's ``llm`` generating ``tokens`` tokens after the
    prompt ``toks``, from a reset context, with the settings pollama's runner uses at
    temperature 0; timed from the first token on."""
    llm.reset()
    n, first = 0, 0.0
    for _tok in llm.generate(toks, temp=0, top_k=40, top_p=0.9, min_p=0.0, repeat_penalty=1.0):
        if n == 0:
            first = time.perf_counter()
        n += 1
        if n >= tokens:
            break
    return (n - 1) / (time.perf_counter() - first)


def in_process(gguf: str, tokens: int, repeats: int, num_ctx: int,
               flash_attn: bool = True) -> list[float]:
    import llama_cpp

    threads = len(os.sched_getaffinity(0))  # what pollama's runner uses by default
    # flash attention on, as pollama's runner has it by default (POLLAMA_FLASH_ATTENTION)
    llm = llama_cpp.Llama(gguf, n_ctx=num_ctx, n_threads=threads, n_threads_batch=threads,
                          flash_attn=flash_attn, verbose=False)
    text = llm.metadata.get("tokenizer.chat_template")
    prompt = (f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n" if text else PROMPT)
    toks = llm.tokenize(prompt.encode(), special=True)
    rates = [in_process_rate(llm, toks, tokens) for _ in range(repeats + 1)]
    return rates[1:]  # first run is warm-up


def through_server(gguf: str, tokens: int, repeats: int, num_ctx: int) -> list[float]:
    from tests.conftest import start_server, stop_server, upload_and_create

    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server(tmp, {"POLLAMA_CONTEXT_LENGTH": str(num_ctx)})
        try:
            upload_and_create(srv.url, gguf, "bench")
            rates = []
            for i in range(repeats + 1):
                # What `pollama run` does: /api/chat, streamed; rate from the server's own counters
                # and, independently, from the client's clock.
                start = None
                n = 0
                body = {"model": "bench", "messages": [{"role": "user", "content": PROMPT}],
                        "options": {"temperature": 0, "num_predict": tokens, "seed": i}}
                with httpx.stream("POST", f"{srv.url}/api/chat", json=body, timeout=300) as r:
                    for line in r.iter_lines():
                        if '"done":false' in line:
                            if start is None:
                                start = time.perf_counter()
                            n += 1
                assert start is not None
                rates.append((n - 1) / (time.perf_counter() - start))
            cli = subprocess.run(
                [sys.executable, "-m", "pollama.cli.main", "run", "bench", PROMPT],
                env=srv.env, capture_output=True, text=True, timeout=600)
            assert cli.returncode == 0, cli.stderr
            return rates[1:]
        finally:
            stop_server(srv)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--num-ctx", type=int, default=2048)
    args = ap.parse_args()
    gguf = args.gguf
    if gguf is None:
        from tests.conftest import smollm2_gguf

        gguf = smollm2_gguf.__wrapped__()  # type: ignore[attr-defined]
    base = in_process(gguf, args.tokens, args.repeats, args.num_ctx)
    plain = in_process(gguf, args.tokens, args.repeats, args.num_ctx, flash_attn=False)
    ours = through_server(gguf, args.tokens, args.repeats, args.num_ctx)
    b, o = statistics.median(base), statistics.median(ours)
    print(f"llama-cpp-python in-process, flash attention off: "
          f"{statistics.median(plain):7.1f} tokens/s")
    print(f"llama-cpp-python in-process : {b:7.1f} tokens/s (median of {len(base)})")
    print(f"pollama serve /api/chat     : {o:7.1f} tokens/s (median of {len(ours)})")
    print(f"ratio pollama / in-process  : {o / b:.3f}")


if __name__ == "__main__":
    main()
