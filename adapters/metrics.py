"""What the server counts and what it logs per request: Prometheus metrics and the request line.

Every metric lives in one ``CollectorRegistry`` per server (never the process-global one, so
several servers in one process, as in tests, do not share counters). The edges call small hooks:

- the app, per HTTP request: ``begin`` when a request arrives, and the returned record's
  ``done`` once its answer has been sent (or the client left). That counts it by route template
  and status, observes its duration, and writes the one structured log line per request;
- the generation service: ``model`` (which model a request named), ``generation`` (a meter
  told of the first token and of the final object with its counts) and ``embedded``;
- the scheduler driver: ``scheduler_step`` for every event fed to the core and the commands it
  answered, ``runner_started`` and ``runner_exited``.

Queue depth and the loaded models with their memory are not bookkept: they are read from the
scheduler's state when ``/metrics`` is scraped.

Route labels are the route's template (``/api/blobs/:digest``), ``unmatched`` for unknown paths;
methods outside HTTP's usual ones are ``other``: every label has a bounded set of values.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pollama.core import logline, routes
from pollama.core import scheduler as sched

log = logging.getLogger("pollama.api")

# The 0.0.4 text format: what every Prometheus version scrapes (pollama's metric names need
# none of 1.0.0's escaping, so the bytes are the same).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Requests range from a /api/tags (ms) to a long generation (minutes).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0, 600.0)
# Time to first token includes queueing and loading the model.
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
CLIENT_CLOSED = 499  # nginx's and Ollama's status for a request whose client went away


@dataclass
class RequestRecord:
    """One HTTP request while it is served: what its log line and metrics need."""

    method: str
    path: str
    request_id: str
    started_ns: int
    route: str = ""
    model: str | None = None
    prompt_tokens: int | None = None
    tokens: int | None = None
    done_called: bool = False

    def add_tokens(self, prompt: int | None, generated: int | None) -> None:
        if prompt is not None:
            self.prompt_tokens = (self.prompt_tokens or 0) + prompt
        if generated is not None:
            self.tokens = (self.tokens or 0) + generated


# The request being served by the current task: the generation service's hooks add the model
# and token counts to it without every front door passing it along.
_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "pollama_request", default=None)


def current() -> RequestRecord | None:
    return _current.get()


class GenerationMeter:
    """One generation: its time to first token and its token counts, by model."""

    def __init__(self, metrics: Metrics, model: str, started_ns: int) -> None:
        self._metrics = metrics
        self._model = model
        self._started_ns = started_ns
        self._record = current()
        self._first = True

    def token(self) -> None:
        if self._first:
            self._first = False
            seconds = (self._metrics.clock() - self._started_ns) / 1e9
            self._metrics.ttft.labels(self._model).observe(max(seconds, 0.0))

    def prompt_cached(self, tokens: int) -> None:
        """Leading prompt tokens the runner found in a slot's cache and did not evaluate (the
        answer's ``prompt_eval_count`` counts the whole prompt, as Ollama's)."""
        if tokens > 0:
            self._metrics.cached.labels(self._model).inc(tokens)

    def finished(self, final: dict[str, Any]) -> None:
        """The final object of the generation (native shape: ``prompt_eval_count``,
        ``eval_count``)."""
        self._metrics.count_tokens(self._model, _count(final, "prompt_eval_count"),
                                   _count(final, "eval_count"), self._record)


def _count(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _SchedulerState(Collector):
    """Queue depth and loaded models, read from the scheduler's state at scrape time."""

    def __init__(self, state: Callable[[], sched.State]) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        queue = GaugeMetricFamily("pollama_queue_depth",
                                  "Requests waiting in the scheduler's queue")
        queue.add_metric([], len(state.waiting))
        yield queue
        loaded = GaugeMetricFamily("pollama_loaded_models", "Runners with a model loaded")
        loaded.add_metric([], sum(1 for r in state.runners
                                  if r.state is sched.RunnerState.READY))
        yield loaded
        running = GaugeMetricFamily("pollama_requests_running",
                                    "Requests dispatched to a runner and not finished")
        running.add_metric([], sum(len(r.in_flight) for r in state.runners))
        yield running
        memory = GaugeMetricFamily("pollama_model_memory_bytes",
                                   "Memory of each loaded (or loading) model's runners",
                                   labels=["model", "memory"])
        sizes: dict[str, tuple[int, int]] = {}
        for r in state.runners:
            total, vram = sizes.get(r.name, (0, 0))
            sizes[r.name] = (total + r.size, vram + r.size_vram)
        for name, (total, vram) in sorted(sizes.items()):
            memory.add_metric([name, "total"], total)
            memory.add_metric([name, "vram"], vram)
        yield memory
        if state.config.cluster:
            yield from _nodes(state)

    def describe(self) -> Iterable[Metric]:
        return ()


def _nodes(state: sched.State) -> Iterator[Metric]:
    """Per cluster node: its budget, the memory its runners hold, its runners and requests."""
    budget = GaugeMetricFamily("pollama_node_memory_budget_bytes",
                               "Memory a cluster node offers for models (0: unlimited)",
                               labels=["node"])
    used = GaugeMetricFamily("pollama_node_memory_used_bytes",
                             "Memory estimate of the runners on a cluster node", labels=["node"])
    runners = GaugeMetricFamily("pollama_node_runners", "Runners on a cluster node",
                                labels=["node"])
    running = GaugeMetricFamily("pollama_node_requests_running",
                                "Requests running on a cluster node", labels=["node"])
    for node in state.nodes:
        mine = [r for r in state.runners if r.node == node.id]
        budget.add_metric([node.id], node.memory)
        used.add_metric([node.id], sum(r.size for r in mine))
        runners.add_metric([node.id], len(mine))
        running.add_metric([node.id], sum(len(r.in_flight) for r in mine))
    yield from (budget, used, runners, running)


class Metrics:
    def __init__(self, *, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.clock = clock
        # No ``*_created`` series: one timestamp per label set is noise in the text format
        # (a process-wide switch of prometheus_client).
        disable_created_metrics()
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("pollama_requests", "HTTP requests answered, by route template "
                                "and status", ["method", "route", "status"], registry=r)
        self.duration = Histogram("pollama_request_duration_seconds", "Time from a request's "
                                  "head to the end of its answer", ["method", "route"],
                                  buckets=DURATION_BUCKETS, registry=r)
        self.in_flight = Gauge("pollama_requests_in_flight", "HTTP requests being answered",
                               registry=r)
        self.ttft = Histogram("pollama_time_to_first_token_seconds", "Time from a generation "
                              "request's arrival to its first token (queueing and loading "
                              "included)", ["model"], buckets=TTFT_BUCKETS, registry=r)
        self.evaluated = Counter("pollama_tokens_evaluated", "Prompt tokens evaluated "
                                 "(prompt_eval_count)", ["model"], registry=r)
        self.cached = Counter("pollama_prompt_tokens_cached", "Prompt tokens reused from a "
                              "slot's cache instead of evaluated (part of prompt_eval_count)",
                              ["model"], registry=r)
        self.generated = Counter("pollama_tokens_generated", "Tokens generated (eval_count)",
                                 ["model"], registry=r)
        self.runner_starts = Counter("pollama_runner_starts", "Runner processes that loaded "
                                     "their model", ["model"], registry=r)
        self.runner_exits = Counter("pollama_runner_exits", "Runner processes that ended, "
                                    "whatever the reason", ["model"], registry=r)
        self.runner_crashes = Counter("pollama_runner_crashes", "Runner processes that ended "
                                      "without being asked to", ["model"], registry=r)
        self.scheduler_events = Counter("pollama_scheduler_events", "Events fed to the "
                                        "scheduler, by kind", ["kind"], registry=r)
        self.scheduler_commands = Counter("pollama_scheduler_commands", "Commands the "
                                          "scheduler gave, by kind", ["kind"], registry=r)

    def watch(self, state: Callable[[], sched.State]) -> None:
        """Report the scheduler state ``state()`` returns at each scrape."""
        self.registry.register(_SchedulerState(state))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # -- HTTP requests ------------------------------------------------------------------------
    def begin(self, method: str, path: str, request_id: str) -> RequestRecord:
        record = RequestRecord(method=method, path=path, request_id=request_id,
                               started_ns=self.clock())
        _current.set(record)
        self.in_flight.inc()
        log.debug("request started", extra={"fields": {"method": method, "path": path,
                                                       "id": request_id}})
        return record

    def done(self, record: RequestRecord, status: int, *, client_gone: bool = False) -> None:
        """Once per request: count it, observe its duration, write its log line."""
        if record.done_called:
            return
        record.done_called = True
        self.in_flight.dec()
        elapsed = self.clock() - record.started_ns
        route = record.route or routes.pattern_of(record.path) or "unmatched"
        method = record.method if record.method in METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(elapsed / 1e9)
        log.info("request", extra={"fields": logline.request_fields(
            method=record.method, path=record.path, route=route, status=status,
            duration_ns=elapsed, request_id=record.request_id, model=record.model,
            prompt_tokens=record.prompt_tokens, tokens=record.tokens,
            client_gone=client_gone)})

    # -- generation service -------------------------------------------------------------------
    def model(self, name: str) -> None:
        """The model the current request named (for its log line)."""
        record = current()
        if record is not None and record.model is None:
            record.model = name

    def generation(self, model: str, started_ns: int) -> GenerationMeter:
        return GenerationMeter(self, model, started_ns)

    def embedded(self, model: str, prompt_tokens: int) -> None:
        self.count_tokens(model, prompt_tokens, None, current())

    def count_tokens(self, model: str, prompt: int | None, generated: int | None,
                     record: RequestRecord | None) -> None:
        if prompt:
            self.evaluated.labels(model).inc(prompt)
        if generated:
            self.generated.labels(model).inc(generated)
        if record is not None:
            record.add_tokens(prompt, generated)

    # -- scheduler and runners ----------------------------------------------------------------
    def scheduler_step(self, event: sched.Event, commands: Iterable[sched.Command]) -> None:
        self.scheduler_events.labels(type(event).__name__).inc()
        for command in commands:
            self.scheduler_commands.labels(type(command).__name__).inc()

    def runner_started(self, model: str) -> None:
        self.runner_starts.labels(model).inc()

    def runner_exited(self, model: str, *, crashed: bool) -> None:
        self.runner_exits.labels(model).inc()
        if crashed:
            self.runner_crashes.labels(model).inc()
