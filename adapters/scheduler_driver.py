"""The scheduler's adapter: owns the clock and the runner processes, decides nothing.

It feeds events to ``core.scheduler.step`` with ``time.monotonic_ns()``, carries out the
commands (spawning and stopping runner processes, waking the request that was dispatched,
rejected or answered), arms one timer at the next deadline, and, with ``POLLAMA_TRACE=FILE``,
appends every ``(now, event, commands)`` to a JSON-lines trace that ``pollama trace replay``
re-runs through the core. Every step, runner start and runner exit is also told to the
server's ``Metrics`` (adapters/metrics.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from pollama.core import runner_protocol as protocol
from pollama.core import scheduler as sched
from pollama.core import trace
from pollama.core.errors import PollamaError, RunnerTerminated

from .metrics import Metrics
from .runner_process import RunnerPipe, RunnerProcess

log = logging.getLogger("pollama.sched")


@dataclass
class _Waiter:
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: sched.Command | None = None


@dataclass(frozen=True)
class RunnerInfo:
    """What /api/ps shows about a runner beyond the scheduler's own state."""

    name: str
    digest: str
    details: dict[str, Any]
    model_path: str
    adapters: tuple[str, ...] = ()
    projectors: tuple[str, ...] = ()
    flash_attention: int = -1


class SchedulerDriver:
    def __init__(self, tg: TaskGroup, config: sched.Config, *, trace_path: str | None = None,
                 clock: Callable[[], int] = time.monotonic_ns,
                 metrics: Metrics | None = None, cluster: Any = None) -> None:
        self._tg = tg
        self.cluster = cluster  # adapters.ray_cluster.RayCluster when on a Ray cluster
        self.metrics = metrics or Metrics()
        self.metrics.watch(lambda: self.state)
        self._stopping: set[int] = set()  # runners told to stop: their exit is no crash
        self.state = sched.State(config=config)
        self._clock = clock
        self._waiters: dict[int, _Waiter] = {}
        self._procs: dict[int, RunnerProcess] = {}
        self._info: dict[str, RunnerInfo] = {}  # by model digest, set before queueing
        self._deadline: int | None = None
        self._wake = anyio.Event()
        self._next_request_id = 1
        self._trace = open(trace_path, "a", encoding="utf-8") if trace_path else None
        if self._trace is not None:
            self._trace.write(trace.header(config) + "\n")
            self._trace.flush()
        tg.start_soon(self._timer)

    # -- feeding the core ---------------------------------------------------------------------
    def feed(self, event: sched.Event) -> None:
        now = self._clock()
        self.state, commands, deadline = sched.step(self.state, event, now)
        if self._trace is not None:
            self._trace.write(trace.line(now, event, commands) + "\n")
            self._trace.flush()
        self.metrics.scheduler_step(event, commands)
        for command in commands:
            self._execute(command)
        if deadline != self._deadline:
            self._deadline = deadline
            self._wake.set()

    def _execute(self, command: sched.Command) -> None:
        if isinstance(command, sched.SpawnRunner):
            self._tg.start_soon(self._spawn, command)
        elif isinstance(command, sched.StopRunner):
            proc = self._procs.get(command.runner_id)
            if proc is not None:
                self._stopping.add(command.runner_id)
                self._tg.start_soon(proc.stop)
            else:  # never started (cannot happen: the core only stops READY runners)
                self.feed(sched.RunnerExited(runner_id=command.runner_id))
        else:
            waiter = self._waiters.get(command.request_id)
            if waiter is not None:
                waiter.outcome = command
                waiter.done.set()

    async def _spawn(self, command: sched.SpawnRunner) -> None:
        info = self._info[command.model]
        spec = command.spec
        runner_id = command.runner_id
        paths = [info.model_path, *info.adapters, *info.projectors]
        pipe: RunnerPipe | None = None
        log.info("loading %s (runner %d) with %s", info.name, runner_id, spec)
        if self.cluster is not None:  # on the node the scheduler named, with its own copies
            runner = self.state.runner(runner_id)
            try:
                pipe, node_paths = await self.cluster.spawn(
                    command.node, runner.size if runner else 0, [_blob(p) for p in paths])
            except Exception as exc:  # Ray's, the agent's, a timeout: the load failed
                message = getattr(exc, "message", "") or str(exc) or type(exc).__name__
                self.feed(sched.RunnerFailed(runner_id=runner_id,
                                             message=f"failed to start runner: {message}"))
                return
            paths = [node_paths[_blob(p)[0]] for p in paths]
        model_path, rest = paths[0], paths[1:]
        adapters, projectors = rest[:len(info.adapters)], rest[len(info.adapters):]
        load = protocol.Load(id=0, model_path=model_path, num_ctx=spec.num_ctx,
                       num_batch=spec.num_batch,
                       num_gpu=spec.num_gpu if spec.num_gpu >= 0 else command.gpu_layers,
                       num_thread=spec.num_thread, use_mmap=spec.use_mmap,
                       adapters=adapters, projectors=projectors,
                       flash_attention=info.flash_attention,
                       num_parallel=command.num_parallel or self.state.config.num_parallel)

        def exited(reason: str) -> None:
            # Only a runner that had loaded counts; a failed load is a RunnerFailed event.
            if self._procs.pop(runner_id, None) is not None:
                self.metrics.runner_exited(info.name, crashed=runner_id not in self._stopping)
            self._stopping.discard(runner_id)
            self.feed(sched.RunnerExited(runner_id=runner_id, message=reason))

        try:
            proc = await RunnerProcess.start(self._tg, load, on_exit=exited, pipe=pipe)
        except PollamaError as exc:
            self.feed(sched.RunnerFailed(runner_id=runner_id, message=exc.message))
            return
        except OSError as exc:
            self.feed(sched.RunnerFailed(runner_id=runner_id,
                                         message=f"failed to start runner: {exc}"))
            return
        log.info("runner %d ready: %s", runner_id, proc.pipe.where)
        self._procs[runner_id] = proc
        self.metrics.runner_started(info.name)
        self.feed(sched.RunnerReady(runner_id=runner_id))

    async def _timer(self) -> None:
        while True:
            self._wake = anyio.Event()
            if self._deadline is None:
                await self._wake.wait()
                continue
            delay = max(0.0, (self._deadline - self._clock()) / 1e9)
            with anyio.move_on_after(delay):
                await self._wake.wait()
                continue
            self.feed(sched.Tick())

    # -- what handlers call ---------------------------------------------------------------------
    def new_request_id(self) -> int:
        request_id = self._next_request_id
        self._next_request_id += 1
        return request_id

    async def acquire(self, request: sched.Request, info: RunnerInfo) -> RunnerProcess | None:
        """Queue a request and wait for the scheduler's answer.

        Returns the runner to use (GENERATE, LOAD) or None (UNLOAD); raises the rejection.
        A cancelled wait (client gone) is reported to the core as RequestCancelled.
        """
        self._info[request.model] = info
        waiter = _Waiter()
        self._waiters[request.id] = waiter
        try:
            self.feed(sched.RequestQueued(request=request))
            try:
                await waiter.done.wait()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    self.feed(sched.RequestCancelled(request_id=request.id))
                raise
        finally:
            self._waiters.pop(request.id, None)
        outcome = waiter.outcome
        if isinstance(outcome, sched.Reject):
            raise PollamaError(outcome.message, status_hint=outcome.status)
        if isinstance(outcome, sched.ReplyUnloaded):
            return None
        assert isinstance(outcome, (sched.Dispatch, sched.ReplyLoaded))
        proc = self._procs.get(outcome.runner_id)
        if proc is None:
            if isinstance(outcome, sched.Dispatch):
                self.feed(sched.RequestFinished(request_id=request.id))
            raise RunnerTerminated()
        return proc

    def finished(self, request_id: int) -> None:
        self.feed(sched.RequestFinished(request_id=request_id))

    def info(self, model_digest: str) -> RunnerInfo | None:
        return self._info.get(model_digest)

    def now(self) -> int:
        return self._clock()

    async def close(self) -> None:
        self._stopping.update(self._procs)
        for proc in list(self._procs.values()):
            await proc.stop()
        if self.cluster is not None:
            await self.cluster.close()
        if self._trace is not None:
            self._trace.close()


def _blob(path: str) -> tuple[str, int]:
    """A store blob's (hex digest, size), from its path (``.../sha256-<hex>``)."""
    return os.path.basename(path).removeprefix("sha256-"), os.path.getsize(path)
