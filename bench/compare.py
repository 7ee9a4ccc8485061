"""pollama against its peers, side by side in one run, on the same GGUF, prompt and greedy
settings. Prints one table of figures and ratios.

    python bench/compare.py [--gguf PATH] [--tokens 128] [--streams 1,2,4,8] [--skip-peers]
    python bench/compare.py --build-only      # just build llama-server (cached)

The llama_cpp.server peer needs its server extras: ``pip install -e '.[bench]'``.

Without --gguf it uses the model `pollama pull smollm2` stores (or the test cache,
~/.cache/pollama-test). Every server binds 127.0.0.1 on a free port and is stopped at the end.

Sections:
1. single stream: decode tok/s of pollama over HTTP (`/api/generate`, streamed) against
   llama-cpp-python in-process (`Llama.generate`);
2. aggregate decode tok/s at 1, 2, 4, 8 concurrent streams (pollama with
   POLLAMA_NUM_PARALLEL = the largest stream count);
3. the same loads against `python -m llama_cpp.server` and llama.cpp's `llama-server`, which is
   built once from the llama.cpp sources inside the llama-cpp-python sdist (`vendor/llama.cpp`,
   cmake target `llama-server`) into ~/.cache/pollama-bench and started with `-np 8`;
4. time to first token of each turn of a 10-turn chat (turn 10 against turn 1);
5. cold start: request to first token with the model unloaded, against a bare `Llama()` load
   plus its first token;
6. `/api/tags` p50/p99 while 8 streams generate.

Decode rates count tokens after the first one over the time after the first one, so prompt
evaluation is left out; aggregates are total generated tokens over wall time.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CACHE = os.path.join(os.path.expanduser("~"), ".cache", "pollama-bench")
LLAMA_CPP_PYTHON = "0.3.36"
PROMPT = "Write a short story about a robot who learns to paint."
CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


# ---------------------------------------------------------------------------------------------
# llama-server, built from the sources llama-cpp-python ships


def build_llama_server() -> str:
    exe = os.path.join(CACHE, f"llama-server-{LLAMA_CPP_PYTHON}")
    if os.path.exists(exe):
        return exe
    os.makedirs(CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        log("downloading the llama-cpp-python sdist ...")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                        ":all:", "-d", tmp, f"llama-cpp-python=={LLAMA_CPP_PYTHON}"],
                       check=True, capture_output=True)
        sdist = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = next(os.path.join(tmp, d, "vendor", "llama.cpp") for d in os.listdir(tmp)
                   if os.path.isdir(os.path.join(tmp, d, "vendor", "llama.cpp")))
        build = os.path.join(tmp, "build")
        log("building llama-server (several minutes on 2 cores) ...")
        subprocess.run(["cmake", "-S", src, "-B", build, "-G", "Ninja",
                        "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                        "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                        "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON"],
                       check=True, capture_output=True)
        subprocess.run(["cmake", "--build", build, "--target", "llama-server", "-j",
                        str(os.cpu_count() or 2)], check=True, capture_output=True)
        shutil.copy(os.path.join(build, "bin", "llama-server"), exe + ".tmp")
        os.replace(exe + ".tmp", exe)
    return exe


# ---------------------------------------------------------------------------------------------
# Targets: each can stream one completion and report (first token time, tokens, end time)


class Target:
    name = ""

    def stream(self, client: httpx.Client, prompt: str, tokens: int
               ) -> tuple[float, int, float]:
        raise NotImplementedError


class Pollama(Target):
    name = "pollama"

    def __init__(self, url: str, model: str) -> None:
        self.url, self.model = url, model

    def stream(self, client: httpx.Client, prompt: str, tokens: int
               ) -> tuple[float, int, float]:
        first, n = 0.0, 0
        body = {"model": self.model, "prompt": prompt, "raw": True,
                "options": {"temperature": 0, "num_predict": tokens, "seed": 1}}
        with client.stream("POST", f"{self.url}/api/generate", json=body) as r:
            for line in r.iter_lines():
                if not line:
                    continue
                obj = json.loads(line)
                if obj.get("response") and not first:
                    first = time.perf_counter()
                if obj.get("done"):
                    n = int(obj.get("eval_count", 0))
        return first, n, time.perf_counter()


class OpenAICompletions(Target):
    """llama-server and llama_cpp.server both serve /v1/completions with SSE."""

    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url

    def stream(self, client: httpx.Client, prompt: str, tokens: int
               ) -> tuple[float, int, float]:
        first, n = 0.0, 0
        body = {"prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
                "seed": 1}
        with client.stream("POST", f"{self.url}/v1/completions", json=body) as r:
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                obj = json.loads(line[6:])
                text = obj["choices"][0].get("text") if obj.get("choices") else ""
                if text:
                    n += 1  # one SSE event per token on both servers
                    if not first:
                        first = time.perf_counter()
        return first, n, time.perf_counter()


def http_client() -> httpx.Client:
    """A new connection per request for every target alike: llama-server closes kept-alive
    connections on its own schedule, which a shared pool sees as a dropped request."""
    return httpx.Client(timeout=600, limits=httpx.Limits(max_keepalive_connections=0))


def decode_rate(first: float, n: int, end: float) -> float:
    return (n - 1) / (end - first) if n > 1 and end > first else 0.0


def aggregate(target: Target, streams: int, tokens: int, repeats: int = 1) -> float:
    """Total tokens of ``streams`` concurrent completions over wall time (best of repeats)."""
    best = 0.0
    for _ in range(repeats):
        with http_client() as client, cf.ThreadPoolExecutor(streams) as pool:
            t0 = time.perf_counter()
            results = list(pool.map(lambda i: target.stream(
                client, CHATML.format(f"{PROMPT} (story {i})"), tokens), range(streams)))
            wall = time.perf_counter() - t0
        best = max(best, sum(n for _, n, _ in results) / wall)
    return best


def single(target: Target, tokens: int, repeats: int) -> float:
    with http_client() as client:
        target.stream(client, CHATML.format(PROMPT), 8)  # warm-up
        return statistics.median(decode_rate(*target.stream(
            client, CHATML.format(PROMPT), tokens)) for _ in range(repeats))


def in_process(gguf: str, tokens: int, repeats: int, num_ctx: int) -> tuple[float, float]:
    """llama-cpp-python in this process: (decode tok/s, load + first token seconds)."""
    import llama_cpp

    threads = len(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(gguf, n_ctx=num_ctx, n_threads=threads, n_threads_batch=threads,
                          flash_attn=True, verbose=False)
    toks = llm.tokenize(CHATML.format(PROMPT).encode(), special=True)
    next(iter(llm.generate(toks, temp=0)))
    cold = time.perf_counter() - t0
    from tokens_per_second import in_process_rate  # bench/ is this script's folder

    rates = [in_process_rate(llm, toks, tokens) for _ in range(repeats)]
    del llm
    return statistics.median(rates), cold


# ---------------------------------------------------------------------------------------------
# Servers


@contextmanager
def pollama_server(gguf: str, parallel: int, num_ctx: int) -> Iterator[Pollama]:
    from tests.conftest import start_server, stop_server, upload_and_create

    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server(tmp, {"POLLAMA_NUM_PARALLEL": str(parallel),
                                 "POLLAMA_CONTEXT_LENGTH": str(num_ctx),
                                 "POLLAMA_KEEP_ALIVE": "30m"})
        try:
            upload_and_create(srv.url, gguf, "bench")
            yield Pollama(srv.url, "bench")
        finally:
            stop_server(srv)


@contextmanager
def process(argv: list[str], url: str, env: dict[str, str] | None = None) -> Iterator[None]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    try:
        wait_http(url, proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def llama_server(gguf: str, parallel: int, num_ctx: int) -> Iterator[Target]:
    exe = build_llama_server()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    threads = str(len(os.sched_getaffinity(0)))
    with process([exe, "-m", gguf, "--host", "127.0.0.1", "--port", str(port), "-np",
                  str(parallel), "-c", str(num_ctx * parallel), "-t", threads, "-fa", "on"],
                 url + "/health"):
        yield OpenAICompletions("llama-server", url)


@contextmanager
def llama_cpp_server(gguf: str, num_ctx: int) -> Iterator[Target]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host",
                  "127.0.0.1", "--port", str(port), "--n_ctx", str(num_ctx),
                  "--flash_attn", "true"], url + "/v1/models"):
        yield OpenAICompletions("llama_cpp.server", url)


# ---------------------------------------------------------------------------------------------
# Sections 4-6 (pollama only)


def chat_turns(target: Pollama, turns: int = 10) -> list[float]:
    """Time to first token of each turn of one growing chat."""
    out = []
    messages: list[dict[str, str]] = []
    with http_client() as client:
        for i in range(turns):
            messages.append({"role": "user", "content": f"Tell me fact number {i + 1} about "
                                                         f"robots in one sentence."})
            t0 = time.perf_counter()
            first, answer = 0.0, []
            body = {"model": target.model, "messages": messages,
                    "options": {"temperature": 0, "num_predict": 32}}
            with client.stream("POST", f"{target.url}/api/chat", json=body) as r:
                for line in r.iter_lines():
                    if not line:
                        continue
                    obj = json.loads(line)
                    text = obj.get("message", {}).get("content", "")
                    if text and not first:
                        first = time.perf_counter()
                    answer.append(text)
            out.append(first - t0)
            messages.append({"role": "assistant", "content": "".join(answer)})
    return out


def cold_start_seconds(target: Pollama) -> float:
    with http_client() as client:
        client.post(f"{target.url}/api/generate", json={"model": target.model,
                                                         "keep_alive": 0})
        for _ in range(600):
            if not client.get(f"{target.url}/api/ps").json()["models"]:
                break
            time.sleep(0.1)
        t0 = time.perf_counter()
        first, _, _ = target.stream(client, CHATML.format(PROMPT), 4)
    return first - t0


def tags_under_load(target: Pollama, streams: int, tokens: int) -> tuple[float, float]:
    lat: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        with http_client() as client:
            while not stop.is_set():
                t0 = time.perf_counter()
                client.get(f"{target.url}/api/tags")
                lat.append(time.perf_counter() - t0)
                time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        aggregate(target, streams, tokens)
    finally:
        stop.set()
        poller.join()
    lat.sort()
    return statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]


# ---------------------------------------------------------------------------------------------


def default_gguf() -> str:
    from tests.conftest import smollm2_gguf

    return smollm2_gguf.__wrapped__()  # type: ignore[attr-defined,no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("--num-ctx", type=int, default=2048)
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()
    if args.build_only:
        print(build_llama_server())
        return
    gguf = args.gguf or default_gguf()
    loads = [int(s) for s in args.streams.split(",")]
    rows: list[tuple[str, str]] = []

    def row(label: str, value: str) -> None:
        rows.append((label, value))
        log(f"{label}: {value}")

    log("in-process llama-cpp-python ...")
    ip_rate, ip_cold = in_process(gguf, args.tokens, args.repeats, args.num_ctx)
    row("in-process llama-cpp-python, decode tok/s", f"{ip_rate:.1f}")
    agg: dict[str, dict[int, float]] = {}
    singles: dict[str, float] = {}
    with pollama_server(gguf, max(loads), args.num_ctx) as pol:
        singles["pollama"] = single(pol, args.tokens, args.repeats)
        row("pollama single stream, decode tok/s", f"{singles['pollama']:.1f}")
        row("  ratio to in-process (target >= 1.0)", f"{singles['pollama'] / ip_rate:.2f}")
        agg["pollama"] = {n: aggregate(pol, n, args.tokens) for n in loads}
        turns = chat_turns(pol)
        cold = cold_start_seconds(pol)
        p50, p99 = tags_under_load(pol, max(loads), args.tokens)
    peers: list[Callable[[], Any]] = []
    if not args.skip_peers:
        peers = [lambda: llama_server(gguf, max(loads), args.num_ctx),
                 lambda: llama_cpp_server(gguf, args.num_ctx)]
    for make in peers:
        try:
            with make() as peer:
                singles[peer.name] = single(peer, args.tokens, args.repeats)
                agg[peer.name] = {n: aggregate(peer, n, args.tokens) for n in loads}
        except Exception as exc:  # a peer that cannot run is reported, not fatal
            row("peer unavailable", f"{exc}")
    for name, rate in singles.items():
        if name != "pollama":
            row(f"{name} single stream, decode tok/s", f"{rate:.1f}")
            row(f"  pollama / {name}", f"{singles['pollama'] / rate:.2f}")
    for name, by_n in agg.items():
        row(f"{name} aggregate tok/s at {','.join(map(str, by_n))} streams",
            " / ".join(f"{v:.1f}" for v in by_n.values()))
    top = max(loads)
    row(f"pollama {top} streams / 1 stream (target >= 1.8)",
        f"{agg['pollama'][top] / agg['pollama'][loads[0]]:.2f}")
    if "llama-server" in agg:
        row(f"pollama / llama-server at {top} streams (target >= 1.1)",
            f"{agg['pollama'][top] / agg['llama-server'][top]:.2f}")
    row("chat TTFT turn 1 / turn 10 s", f"{turns[0]:.3f} / {turns[-1]:.3f}")
    row("  turn 10 / turn 1 (target <= 1.2)", f"{turns[-1] / turns[0]:.2f}")
    row("cold start to first token s: pollama / bare Llama()", f"{cold:.2f} / {ip_cold:.2f}")
    row(f"/api/tags p50 / p99 ms during {top} streams", f"{p50 * 1000:.1f} / {p99 * 1000:.1f}")
    print("| measure | value |\n| --- | --- |")
    for label, value in rows:
        print(f"| {label.strip()} | {value} |")


if __name__ == "__main__":
    main()
