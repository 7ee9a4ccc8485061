"""A minimal load-on-demand registry of runner processes.

One runner per (model blob, load options); loads happen one at a time (a lock), a runner is
reused while its load options match, and a dead runner is replaced on the next request. The
real scheduler (keep_alive expiry, eviction, queueing) replaces this with a core state machine.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import anyio
from anyio.abc import TaskGroup

from pollama.core import runner_protocol as rp

from .runner_process import RunnerProcess

log = logging.getLogger("pollama.pool")


class RunnerPool:
    def __init__(self, tg: TaskGroup, *, max_loaded: int = 3) -> None:
        self._tg = tg
        self._lock = anyio.Lock()
        self._runners: dict[str, RunnerProcess] = {}  # model digest -> runner
        self._ids = itertools.count(1000)
        self._max_loaded = max(1, max_loaded)

    async def acquire(self, model_digest: str, model_path: str,
                      load: dict[str, Any]) -> RunnerProcess:
        async with self._lock:
            runner = self._runners.get(model_digest)
            spec = rp.Load(id=next(self._ids), model_path=model_path, **load)
            if runner is not None and runner.alive and _same_load(runner.load_spec, spec):
                return runner
            if runner is not None:
                log.info("reloading %s (options changed or runner exited)", model_digest[:12])
                self._runners.pop(model_digest, None)
                await runner.stop()
            while len(self._runners) >= self._max_loaded:
                idle = [d for d, r in self._runners.items() if r.in_flight == 0]
                if not idle:
                    break
                victim = self._runners.pop(idle[0])
                await victim.stop()
            log.info("loading %s with %s", model_path, load)
            runner = await RunnerProcess.start(self._tg, spec)
            self._runners[model_digest] = runner
            return runner

    async def unload(self, model_digest: str) -> None:
        async with self._lock:
            runner = self._runners.pop(model_digest, None)
        if runner is not None:
            await runner.stop()

    async def close(self) -> None:
        for runner in list(self._runners.values()):
            await runner.stop()
        self._runners.clear()


def _same_load(a: rp.Load, b: rp.Load) -> bool:
    return (a.model_path, a.num_ctx, a.num_batch, a.num_gpu, a.num_thread, a.use_mmap) == (
        b.model_path, b.num_ctx, b.num_batch, b.num_gpu, b.num_thread, b.use_mmap)
