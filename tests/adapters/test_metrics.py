"""adapters/metrics.py: what the hooks count, the scrape-time scheduler state, and the
``on_done`` hook of the HTTP adapter that ends each request's record (over a real socket)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pollama.adapters.http_server import Request, Response, serve
from pollama.adapters.metrics import Metrics
from pollama.core import scheduler as sched


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed back as Prometheus would: (name, labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def test_requests_are_labelled_by_route_template_never_the_raw_path() -> None:
    m = Metrics()
    for path in ("/api/blobs/sha256:" + "a" * 64, "/api/blobs/sha256:" + "b" * 64):
        m.done(m.begin("HEAD", path, "r1"), 404)
    m.done(m.begin("GET", "/no/such/" + "x" * 50, "r2"), 404)
    m.done(m.begin("BREW", "/api/tags", "r3"), 405)
    r = m.begin("POST", "/api/chat?x=1", "r4")
    r.route = "/api/chat"
    m.done(r, 200)
    assert value(m, "pollama_requests_total", method="HEAD", route="/api/blobs/:digest",
                 status="404") == 2
    assert value(m, "pollama_requests_total", method="GET", route="unmatched",
                 status="404") == 1
    assert value(m, "pollama_requests_total", method="other", route="/api/tags",
                 status="405") == 1
    assert value(m, "pollama_request_duration_seconds_count", method="POST",
                 route="/api/chat") == 1
    routes = {dict(labels)["route"] for (name, labels) in samples(m)
              if name == "pollama_requests_total"}
    assert routes == {"/api/blobs/:digest", "unmatched", "/api/tags", "/api/chat"}


def test_done_counts_once_and_in_flight_returns_to_zero() -> None:
    m = Metrics()
    r = m.begin("GET", "/api/tags", "r")
    assert value(m, "pollama_requests_in_flight") == 1
    m.done(r, 200)
    m.done(r, 200, client_gone=True)
    assert value(m, "pollama_requests_in_flight") == 0
    assert value(m, "pollama_requests_total", method="GET", route="/api/tags",
                 status="200") == 1


def test_generation_meter_counts_tokens_and_first_token_once() -> None:
    now = [1_000_000_000]
    m = Metrics(clock=lambda: now[0])
    record = m.begin("POST", "/api/generate", "r")
    m.model("smol")
    m.model("ignored: the first model named is the request's")
    meter = m.generation("smol:latest", started_ns=now[0])
    now[0] += 250_000_000
    meter.token()
    now[0] += 5_000_000_000
    meter.token()
    meter.finished({"prompt_eval_count": 31, "eval_count": 7, "done": True})
    m.embedded("smol:latest", 3)
    assert record.model == "smol"
    assert (record.prompt_tokens, record.tokens) == (34, 7)
    assert value(m, "pollama_tokens_generated_total", model="smol:latest") == 7
    assert value(m, "pollama_tokens_evaluated_total", model="smol:latest") == 34
    assert value(m, "pollama_time_to_first_token_seconds_count", model="smol:latest") == 1
    assert value(m, "pollama_time_to_first_token_seconds_sum", model="smol:latest") == 0.25


def test_two_servers_in_one_process_keep_their_own_counters() -> None:
    a, b = Metrics(), Metrics()
    a.done(a.begin("GET", "/", "x"), 200)
    assert value(a, "pollama_requests_total", method="GET", route="/", status="200") == 1
    assert value(b, "pollama_requests_total", method="GET", route="/", status="200") is None


def test_scheduler_state_is_read_at_scrape_time() -> None:
    m = Metrics()
    spec = sched.LoadSpec()

    def runner(rid: int, name: str, size: int, vram: int, state: sched.RunnerState,
               in_flight: tuple[int, ...] = ()) -> sched.Runner:
        return sched.Runner(id=rid, model="sha256:" + name, name=name, spec=spec, state=state,
                            size=size, size_vram=vram, keep_alive=0, in_flight=in_flight)

    state = sched.State(
        runners=(runner(1, "a:latest", 100, 40, sched.RunnerState.READY, (7, 8)),
                 runner(2, "a:latest", 10, 0, sched.RunnerState.LOADING),
                 runner(3, "b:latest", 5, 0, sched.RunnerState.READY)),
        waiting=(sched.Request(id=9, model="sha256:c"),))
    box = [sched.State()]
    m.watch(lambda: box[0])
    assert value(m, "pollama_queue_depth") == 0
    assert value(m, "pollama_loaded_models") == 0
    box[0] = state
    assert value(m, "pollama_queue_depth") == 1
    assert value(m, "pollama_loaded_models") == 2
    assert value(m, "pollama_requests_running") == 2
    assert value(m, "pollama_model_memory_bytes", model="a:latest", memory="total") == 110
    assert value(m, "pollama_model_memory_bytes", model="a:latest", memory="vram") == 40
    assert value(m, "pollama_model_memory_bytes", model="b:latest", memory="total") == 5


def test_scheduler_steps_and_runner_lifecycle() -> None:
    m = Metrics()
    m.scheduler_step(sched.RequestQueued(request=sched.Request(id=1, model="d")),
                     (sched.SpawnRunner(runner_id=1, model="d", spec=sched.LoadSpec()),))
    m.scheduler_step(sched.RunnerReady(runner_id=1),
                     (sched.Dispatch(request_id=1, runner_id=1),))
    m.scheduler_step(sched.Tick(), ())
    m.runner_started("smol:latest")
    m.runner_exited("smol:latest", crashed=False)
    m.runner_started("smol:latest")
    m.runner_exited("smol:latest", crashed=True)
    assert value(m, "pollama_scheduler_events_total", kind="RequestQueued") == 1
    assert value(m, "pollama_scheduler_events_total", kind="Tick") == 1
    assert value(m, "pollama_scheduler_commands_total", kind="SpawnRunner") == 1
    assert value(m, "pollama_runner_starts_total", model="smol:latest") == 2
    assert value(m, "pollama_runner_exits_total", model="smol:latest") == 2
    assert value(m, "pollama_runner_crashes_total", model="smol:latest") == 1


def test_request_line_is_logged_with_its_fields(caplog: pytest.LogCaptureFixture) -> None:
    m = Metrics()
    with caplog.at_level(logging.INFO, logger="pollama.api"):
        r = m.begin("POST", "/api/generate", "abc")
        r.route, r.model, r.tokens = "/api/generate", "smol", 5
        m.done(r, 200, client_gone=True)
    [rec] = [x for x in caplog.records if x.getMessage() == "request"]
    fields = rec.fields  # type: ignore[attr-defined]
    assert fields["method"] == "POST" and fields["route"] == "/api/generate"
    assert fields["status"] == 200 and fields["model"] == "smol" and fields["tokens"] == 5
    assert fields["id"] == "abc" and fields["client_gone"] is True
    assert fields["duration_ms"] >= 0


# -- the HTTP adapter's on_done hook ---------------------------------------------------------


def served(client: Callable[[int], Awaitable[None]]) -> list[bool]:
    """Serve a small app on a loopback port while ``client(port)`` runs; what each
    response's ``on_done`` was called with."""
    done: list[bool] = []

    async def app(request: Request) -> Response:
        if request.target == "/stream-forever":
            async def forever() -> AsyncIterator[bytes]:
                while True:
                    yield b'{"i":0}\n'
                    await anyio.sleep(0.05)
            resp = Response(status=200, body=forever(), content_type="application/x-ndjson")
        else:
            resp = Response(status=200, body=b"ok")
        resp.on_done = done.append
        return resp

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve, app, "127.0.0.1", 0)
            await client(port)
            with anyio.fail_after(60):
                while not done:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()

    anyio.run(main)
    return done


def test_on_done_after_the_answer_was_sent() -> None:
    async def client(port: int) -> None:
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"http://127.0.0.1:{port}/plain")).text == "ok"

    assert served(client) == [False]


def test_on_done_says_the_client_left_mid_stream() -> None:
    async def client(port: int) -> None:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(b"GET /stream-forever HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await stream.receive()  # the head and a first line: the stream has started
        await stream.aclose()

    assert served(client) == [True]
