"""``GET /metrics`` of a real ``pollama serve`` with the real model, parsed as Prometheus would.

The server is this module's own, so every generation it counted is one sent here: the counters
are checked against what was sent (requests by route and status) and what came back (the sum
of ``eval_count``), the runner start and, once the model is unloaded or its runner killed, the
exit and the crash.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server, runner_pids, running_server, wait_for

pytestmark = pytest.mark.e2e

MODEL = "smol:latest"  # the label: the model's short name
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, **kw: object) -> Samples:
    r = httpx.get(url + "/metrics", timeout=60, **kw)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape_until(url: str, what: str, ok: Callable[[Samples], bool]) -> Samples:
    def check() -> Samples | None:
        samples = scrape(url)
        return samples if ok(samples) else None

    return wait_for(what, check)  # type: ignore[no-any-return]


def requests(samples: Samples, method: str, route: str, status: int) -> float:
    return get(samples, "pollama_requests_total", method=method, route=route, status=str(status))


@pytest.fixture(scope="module")
def srv(smollm2_gguf: str) -> Iterator[Server]:
    with running_server("pollama-metrics-", smollm2_gguf) as s:
        yield s


def test_counters_match_what_was_sent(srv: Server) -> None:
    before = scrape(srv.url)
    assert get(before, "pollama_runner_starts_total", model=MODEL) == 0
    assert get(before, "pollama_loaded_models") == 0
    opts = {"num_predict": 4, "temperature": 0}
    evals: list[int] = []
    prompts: list[int] = []
    with httpx.Client(base_url=srv.url, timeout=300) as c:
        final = None
        with c.stream("POST", "/api/generate", json={"model": "smol", "prompt": "Hi",
                                                     "options": opts}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.strip():
                    final = json.loads(line)
        assert final is not None and final["done"]
        evals.append(final["eval_count"])
        prompts.append(final["prompt_eval_count"])
        for path, body in (
                ("/api/generate", {"model": "smol", "prompt": "Why?", "stream": False,
                                   "options": opts}),
                ("/api/chat", {"model": "smol", "stream": False, "options": opts,
                               "messages": [{"role": "user", "content": "Hello"}]})):
            r = c.post(path, json=body)
            assert r.status_code == 200, r.text
            evals.append(r.json()["eval_count"])
            prompts.append(r.json()["prompt_eval_count"])
        r = c.post("/api/embed", json={"model": "smol", "input": ["one", "two words"]})
        assert r.status_code == 200, r.text
        prompts.append(r.json()["prompt_eval_count"])
        assert c.get("/no/such/path").status_code == 404
        assert c.get("/api/generate").status_code == 405
        assert c.post("/api/chat", json={"model": "nope"}).status_code == 404
        for _ in range(3):
            assert c.get("/api/tags").status_code == 200
        ps = c.get("/api/ps").json()["models"]
    after = scrape(srv.url)

    def delta(method: str, route: str, status: int) -> float:
        return requests(after, method, route, status) - requests(before, method, route, status)

    assert delta("POST", "/api/generate", 200) == 2
    assert delta("POST", "/api/chat", 200) == 1
    assert delta("POST", "/api/chat", 404) == 1
    assert delta("POST", "/api/embed", 200) == 1
    assert delta("GET", "unmatched", 404) == 1
    assert delta("GET", "/api/generate", 405) == 1
    assert delta("GET", "/api/tags", 200) == 3
    assert delta("GET", "/metrics", 200) == 1  # the first scrape; a scrape counts once done
    assert (get(after, "pollama_request_duration_seconds_count", method="POST",
                route="/api/generate")
            - get(before, "pollama_request_duration_seconds_count", method="POST",
                  route="/api/generate")) == 2
    # Every generation this server ran is one of the above.
    assert sum(evals) > 0
    assert get(after, "pollama_tokens_generated_total", model=MODEL) == sum(evals)
    assert get(after, "pollama_tokens_evaluated_total", model=MODEL) == sum(prompts)
    assert get(after, "pollama_time_to_first_token_seconds_count", model=MODEL) == 3
    assert get(after, "pollama_runner_starts_total", model=MODEL) == 1
    assert get(after, "pollama_loaded_models") == 1
    assert get(after, "pollama_queue_depth") == 0
    assert get(after, "pollama_requests_running") == 0
    assert get(after, "pollama_requests_in_flight") == 1  # the scrape itself
    [loaded] = ps
    assert get(after, "pollama_model_memory_bytes", model=MODEL, memory="total") == loaded["size"]
    assert get(after, "pollama_model_memory_bytes", model=MODEL,
               memory="vram") == loaded["size_vram"]
    assert get(after, "pollama_scheduler_events_total", kind="RequestQueued") == 4
    assert get(after, "pollama_scheduler_events_total", kind="RequestFinished") == 4
    assert get(after, "pollama_scheduler_events_total", kind="RunnerReady") == 1
    assert get(after, "pollama_scheduler_commands_total", kind="SpawnRunner") == 1
    assert get(after, "pollama_scheduler_commands_total", kind="Dispatch") == 4
    for name, _ in after:  # bounded labels: never a raw path
        assert "/no/such/path" not in name


def test_unload_is_an_exit_and_a_killed_runner_a_crash(srv: Server) -> None:
    with httpx.Client(base_url=srv.url, timeout=300) as c:
        r = c.post("/api/generate", json={"model": "smol", "prompt": "Hi", "stream": False,
                                          "options": {"num_predict": 1}})
        assert r.status_code == 200
        starts = get(scrape(srv.url), "pollama_runner_starts_total", model=MODEL)
        exits = get(scrape(srv.url), "pollama_runner_exits_total", model=MODEL)
        assert c.post("/api/generate", json={"model": "smol", "keep_alive": 0}).status_code == 200
        m = scrape_until(srv.url, "the unloaded runner's exit", lambda s: get(
            s, "pollama_runner_exits_total", model=MODEL) == exits + 1)
        assert get(m, "pollama_runner_crashes_total", model=MODEL) == 0
        assert get(m, "pollama_loaded_models") == 0
        assert get(m, "pollama_scheduler_commands_total", kind="StopRunner") >= 1

        r = c.post("/api/generate", json={"model": "smol", "prompt": "Hi", "stream": False,
                                          "options": {"num_predict": 1}})
        assert r.status_code == 200
        assert get(scrape(srv.url), "pollama_runner_starts_total", model=MODEL) == starts + 1
        [pid] = runner_pids(srv.proc.pid)
        os.kill(pid, signal.SIGKILL)
        m = scrape_until(srv.url, "the killed runner's crash", lambda s: get(
            s, "pollama_runner_crashes_total", model=MODEL) == 1)
        assert get(m, "pollama_runner_exits_total", model=MODEL) == exits + 2
        assert get(m, "pollama_scheduler_events_total", kind="RunnerExited") >= 2


def test_metrics_sit_behind_the_host_and_origin_guard(srv: Server) -> None:
    r = httpx.get(srv.url + "/metrics", headers={"Host": "attacker.example.com"}, timeout=60)
    assert r.status_code == 403
    assert "pollama_" not in r.text
    r = httpx.get(srv.url + "/metrics", headers={"Origin": "https://evil.example"}, timeout=60)
    assert r.status_code == 403
    assert "pollama_" not in r.text
    after = scrape(srv.url)
    assert requests(after, "GET", "/metrics", 403) == 2  # refused requests are counted too


def test_metrics_need_the_api_key_when_one_is_set() -> None:
    with running_server("pollama-metrics-key-", env={"POLLAMA_API_KEY": "metrics-key"}) as s:
        r = httpx.get(s.url + "/metrics", timeout=60)
        assert r.status_code == 401
        assert "pollama_" not in r.text
        r = httpx.get(s.url + "/metrics", timeout=60, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        samples = scrape(s.url, headers={"Authorization": "Bearer metrics-key"})
        assert requests(samples, "GET", "/metrics", 401) == 2
