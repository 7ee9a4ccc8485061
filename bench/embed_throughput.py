"""Embedding throughput: /api/embed with many inputs in one request (packed into shared
decodes by the runner) against the same inputs sent one request each, and against
llama-cpp-python's own batched ``Llama.embed`` in-process. Prints inputs/s and ratios.

    python bench/embed_throughput.py [--gguf PATH] [--inputs 64] [--repeats 3]

Starts its own `pollama serve` on a free port with a temporary model store.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import httpx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def texts(n: int) -> list[str]:
    return [f"Sentence number {i} is about the colour of the sky on day {i * 7 % 31}."
            for i in range(n)]


def in_process(gguf: str, inputs: list[str], repeats: int) -> list[float]:
    import llama_cpp

    threads = len(os.sched_getaffinity(0))
    llm = llama_cpp.Llama(gguf, n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                          embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                          verbose=False)
    rates = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        llm.embed(inputs)
        rates.append(len(inputs) / (time.perf_counter() - t))
    return rates[1:]


def through_server(gguf: str, inputs: list[str], repeats: int) -> tuple[list[float], list[float]]:
    from tests.conftest import start_server, stop_server, upload_and_create

    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server(tmp, {"POLLAMA_CONTEXT_LENGTH": "2048"})
        try:
            upload_and_create(srv.url, gguf, "bench")
            url = f"{srv.url}/api/embed"
            with httpx.Client(timeout=600) as c:
                c.post(url, json={"model": "bench", "input": "warm up"}).raise_for_status()
                batched, single = [], []
                for _ in range(repeats):
                    t = time.perf_counter()
                    r = c.post(url, json={"model": "bench", "input": inputs})
                    r.raise_for_status()
                    batched.append(len(inputs) / (time.perf_counter() - t))
                    t = time.perf_counter()
                    for text in inputs:
                        c.post(url, json={"model": "bench", "input": text}).raise_for_status()
                    single.append(len(inputs) / (time.perf_counter() - t))
            return batched, single
        finally:
            stop_server(srv)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf")
    ap.add_argument("--inputs", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    gguf = args.gguf
    if gguf is None:
        from tests.conftest import smollm2_gguf

        gguf = smollm2_gguf.__wrapped__()  # type: ignore[attr-defined]
    inputs = texts(args.inputs)
    base = statistics.median(in_process(gguf, inputs, args.repeats))
    b, s = (statistics.median(x) for x in through_server(gguf, inputs, args.repeats))
    print(f"llama-cpp-python Llama.embed in-process : {base:8.1f} inputs/s")
    print(f"pollama /api/embed, {args.inputs} inputs per request : {b:8.1f} inputs/s")
    print(f"pollama /api/embed, one input per request : {s:8.1f} inputs/s")
    print(f"ratio batched / one-per-request         : {b / s:.2f}")
    print(f"ratio batched / llama-cpp-python        : {b / base:.2f}")


if __name__ == "__main__":
    main()
