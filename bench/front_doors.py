"""The cost of each front door over the one generation core: the same chat, greedy and bounded
by a token count, through native /api/chat (NDJSON), OpenAI /v1/chat/completions (SSE) and
Anthropic /v1/messages (SSE), streamed and not. Prints the median wall time per request and
each door's ratio to native; tokens are counted from the responses, so all doors did the same
work.

    python bench/front_doors.py [--gguf PATH] [--tokens 64] [--repeats 5]

Without --gguf it uses the test model cache (~/.cache/pollama-test). Starts its own
`pollama serve` on 127.0.0.1 with a temporary model store.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import httpx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

ASK = [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]


def _sse_data(r: httpx.Response) -> list[dict[str, object]]:
    out = []
    for line in r.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


def doors(url: str, tokens: int) -> dict[str, Callable[[httpx.Client], int]]:
    """Each door: make one request, return the completion tokens it reports."""
    opts = {"temperature": 0, "seed": 1, "num_predict": tokens}

    def native(c: httpx.Client, stream: bool) -> int:
        body = {"model": "bench", "messages": ASK, "stream": stream, "options": opts}
        if not stream:
            return int(c.post(f"{url}/api/chat", json=body).json()["eval_count"])
        with c.stream("POST", f"{url}/api/chat", json=body) as r:
            last = [json.loads(line) for line in r.iter_lines() if line][-1]
        return int(last["eval_count"])

    def openai(c: httpx.Client, stream: bool) -> int:
        body = {"model": "bench", "messages": ASK, "stream": stream, "temperature": 0, "seed": 1,
                "max_tokens": tokens, "stream_options": {"include_usage": True}}
        if not stream:
            body.pop("stream_options")
            return int(c.post(f"{url}/v1/chat/completions", json=body).json()["usage"]
                       ["completion_tokens"])
        with c.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            return int(_sse_data(r)[-1]["usage"]["completion_tokens"])  # type: ignore[index]

    def anthropic(c: httpx.Client, stream: bool) -> int:
        body = {"model": "bench", "messages": ASK, "stream": stream, "temperature": 0,
                "max_tokens": tokens}
        if not stream:
            return int(c.post(f"{url}/v1/messages", json=body).json()["usage"]["output_tokens"])
        with c.stream("POST", f"{url}/v1/messages", json=body) as r:
            deltas = [d for d in _sse_data(r) if d.get("type") == "message_delta"]
        return int(deltas[-1]["usage"]["output_tokens"])  # type: ignore[index]

    return {
        "native": lambda c: native(c, False), "native stream": lambda c: native(c, True),
        "openai": lambda c: openai(c, False), "openai stream": lambda c: openai(c, True),
        "anthropic": lambda c: anthropic(c, False),
        "anthropic stream": lambda c: anthropic(c, True),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from tests.conftest import smollm2_gguf, start_server, stop_server, upload_and_create

    gguf = args.gguf or smollm2_gguf.__wrapped__()  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server(tmp)
        try:
            upload_and_create(srv.url, gguf, "bench")
            times: dict[str, list[float]] = {}
            counts: dict[str, set[int]] = {}
            with httpx.Client(timeout=600) as c:
                table = doors(srv.url, args.tokens)
                for make in table.values():  # warm-up: load the model once, every path once
                    make(c)
                for _ in range(args.repeats):  # interleaved, so drift hits every door alike
                    for name, make in table.items():
                        t0 = time.perf_counter()
                        counts.setdefault(name, set()).add(make(c))
                        times.setdefault(name, []).append(time.perf_counter() - t0)
        finally:
            stop_server(srv)
    base = statistics.median(times["native"])
    base_stream = statistics.median(times["native stream"])
    print(f"{'door':<18} {'median s':>9} {'ratio':>7}  tokens")
    for name, ts in times.items():
        ref = base_stream if "stream" in name else base
        med = statistics.median(ts)
        print(f"{name:<18} {med:9.3f} {med / ref:7.3f}  {sorted(counts[name])}")


if __name__ == "__main__":
    main()
