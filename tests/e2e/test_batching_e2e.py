"""Continuous batching end to end: a real ``pollama serve`` with POLLAMA_NUM_PARALLEL=4 sends
concurrent requests to one runner, which decodes them together. With temperature 0 each request
gives the text it gives alone; a client that hangs up mid-stream is cancelled without changing
the others; a second chat turn reuses the first turn's cache and answers as a cold run; an
embedding request during decoding leaves the streams unchanged. Work is bounded by num_predict,
never by timing.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, child_pids, start_server, stop_server, upload_and_create

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.",
           "List three prime numbers.", "Name a famous painter and one of their paintings."]
GREEDY = {"temperature": 0, "num_predict": 24}


@pytest.fixture(scope="module")
def srv(smollm2_gguf: str) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="pollama-batch-") as tmp:
        server = start_server(tmp, {"POLLAMA_NUM_PARALLEL": "4"})
        try:
            upload_and_create(server.url, smollm2_gguf, "smol")
            yield server
        finally:
            stop_server(server)


def chat(srv: Server, content: str | list[dict[str, str]], **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": content}] if isinstance(content, str) else content
    r = httpx.post(f"{srv.url}/api/chat", timeout=300, json={
        "model": "smol", "messages": messages, "stream": False,
        "options": body.pop("options", GREEDY), **body})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def runner_env(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def cached_tokens(srv: Server) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{srv.url}/metrics", timeout=60).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "pollama_prompt_tokens_cached_total")


def together(*calls: Callable[[], Any]) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return results


@pytest.fixture(scope="module")
def alone(srv: Server) -> dict[str, str]:
    return {p: chat(srv, p)["message"]["content"] for p in PROMPTS}


def test_four_concurrent_chats_give_their_solo_text(srv: Server, alone: dict[str, str]) -> None:
    got = together(*(lambda p=p: chat(srv, p) for p in PROMPTS))
    assert [g["message"]["content"] for g in got] == [alone[p] for p in PROMPTS]
    ps = httpx.get(f"{srv.url}/api/ps").json()["models"]
    assert len(ps) == 1  # one runner served them all


def test_a_client_hanging_up_leaves_the_others_unchanged(srv: Server,
                                                        alone: dict[str, str]) -> None:
    def hang_up() -> int:
        pieces = 0
        with httpx.stream("POST", f"{srv.url}/api/chat", timeout=300, json={
                "model": "smol", "options": {"temperature": 0, "num_predict": 400},
                "messages": [{"role": "user", "content": "Tell me a long story."}]}) as r:
            for line in r.iter_lines():
                if line and not json.loads(line).get("done"):
                    pieces += 1
                if pieces >= 3:
                    break  # closing the response hangs up mid-stream
        return pieces

    got = together(hang_up, *(lambda p=p: chat(srv, p) for p in PROMPTS[:3]))
    assert got[0] >= 3
    assert [g["message"]["content"] for g in got[1:]] == [alone[p] for p in PROMPTS[:3]]


SYSTEM = "You are Bob, a careful assistant who answers in one short sentence and never uses lists."


def test_a_shared_prefix_is_reused_and_answers_as_cold(srv: Server, smollm2_gguf: str) -> None:
    # The reused prefix here was prefilled; a prefix of generated tokens is reused too, but
    # its KV was computed one token per decode and may round differently (see
    # tests/runners/test_batch_runner.py).
    def msgs(q: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]

    chat(srv, msgs("What is the capital of France?"))
    before = cached_tokens(srv)
    warm = chat(srv, msgs("What is the largest ocean?"))
    reused = cached_tokens(srv) - before
    # The system prompt and the turn's opening were not evaluated again; prompt_eval_count
    # still counts the whole prompt, as Ollama's does. /metrics says what was reused.
    assert 20 < reused < warm["prompt_eval_count"]
    with tempfile.TemporaryDirectory(prefix="pollama-cold-") as tmp:
        cold_srv = start_server(tmp, {"POLLAMA_NUM_PARALLEL": "4"})
        try:
            upload_and_create(cold_srv.url, smollm2_gguf, "smol")
            cold = chat(cold_srv, msgs("What is the largest ocean?"))
        finally:
            stop_server(cold_srv)
    assert warm["message"]["content"] == cold["message"]["content"]
    assert warm["prompt_eval_count"] == cold["prompt_eval_count"]  # the whole prompt, as Ollama


def test_formats_and_stops_hold_under_concurrency(srv: Server) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"]}
    jobs: list[dict[str, Any]] = [
        {"content": "Describe a person as JSON.", "format": schema,
         "options": {"temperature": 0, "num_predict": 60}},
        {"content": "Describe a city as JSON.", "format": "json",
         "options": {"temperature": 0, "num_predict": 40}},
        {"content": "List the days of the week, one per line.",
         "options": {"temperature": 0, "num_predict": 40, "stop": ["Wednesday"]}},
        {"content": "Count from one to ten in words.",
         "options": {"temperature": 0, "num_predict": 30}},
    ]
    solo = [chat(srv, **j) for j in jobs]
    got = together(*(lambda j=j: chat(srv, **j) for j in jobs))
    assert [g["message"]["content"] for g in got] == [s["message"]["content"] for s in solo]
    person = json.loads(got[0]["message"]["content"])
    assert isinstance(person["name"], str) and isinstance(person["age"], int)
    assert "Wednesday" not in got[2]["message"]["content"] and got[2]["done_reason"] == "stop"


def test_embedding_during_decoding(srv: Server, alone: dict[str, str]) -> None:
    text = "The sky is blue because molecules scatter blue light."

    def embed() -> list[float]:
        r = httpx.post(f"{srv.url}/api/embed", timeout=300, json={"model": "smol", "input": text})
        assert r.status_code == 200, r.text
        vec: list[float] = r.json()["embeddings"][0]
        return vec

    idle = embed()
    got = together(*(lambda p=p: chat(srv, p) for p in PROMPTS[:3]), embed)
    assert [g["message"]["content"] for g in got[:3]] == [alone[p] for p in PROMPTS[:3]]
    assert max(abs(a - b) for a, b in zip(got[3], idle)) < 1e-5


def test_four_slots_by_default_where_memory_allows(smollm2_gguf: str, tmp_path: Any) -> None:
    """Without POLLAMA_NUM_PARALLEL the runner is loaded with four slots (its estimate, KV
    cache of num_ctx × 4 included, fits this machine's memory): the scheduler's trace shows
    the decision, and four streams are generating at once (each holds until all four have
    a token, then hangs up)."""
    trace = tmp_path / "trace.jsonl"
    server = start_server(str(tmp_path), {"POLLAMA_TRACE": str(trace)})
    all_streaming = threading.Barrier(4, timeout=600)

    def stream(i: int) -> str:
        with httpx.stream("POST", f"{server.url}/api/generate", timeout=600, json={
                "model": "smol", "raw": True, "prompt": f"Count: {i}, {i + 1}, {i + 2},",
                "options": {"temperature": 0, "num_predict": 2000}}) as r:
            first = json.loads(next(line for line in r.iter_lines() if line))
            all_streaming.wait()  # breaks (fails) unless all four generate together
            return str(first["response"])

    try:
        upload_and_create(server.url, smollm2_gguf, "smol")
        got = together(*(lambda i=i: stream(i) for i in range(4)))
        assert all(isinstance(g, str) for g in got), got
        ps = httpx.get(f"{server.url}/api/ps").json()["models"]
        # the runner's OpenMP threads spin briefly (core.decoding.RUNNER_ENV_DEFAULTS)
        envs = [runner_env(pid) for pid in child_pids(server.proc.pid)]
        assert envs and all(e.get("GOMP_SPINCOUNT") == "1000" for e in envs)
    finally:
        stop_server(server)
    steps = [json.loads(line) for line in trace.read_text().splitlines()[1:]]
    spawns = [c for s in steps for c in s["commands"] if c["type"] == "SpawnRunner"]
    assert [c["num_parallel"] for c in spawns] == [4]
    queued = [s["event"]["request"] for s in steps if s["event"]["type"] == "RequestQueued"]
    assert {q["num_parallel"] for q in queued} == {4}
    assert ps[0]["size"] == queued[0]["size"]  # the memory of four slots
