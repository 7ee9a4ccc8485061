"""The scheduler: which models are in memory, who runs where, who waits, who is turned away.

A pure reducer in the Sans-IO style (aioquic's time-as-input, h11's state table)::

    step(state, event, now) -> (state, commands, next_deadline)

Events are facts the adapter observed (a request arrived, a runner became ready, a runner
exited, the timer fired); commands are what the adapter must do (spawn or stop a runner,
dispatch a request to a runner, reject a request, reply that a model was loaded/unloaded).
``now`` and every time are integer nanoseconds of a monotonic clock owned by the adapter; the
adapter arms one timer at ``next_deadline`` and feeds ``Tick`` when it fires.

Theory of operation (reference §6):

* A request names a model (by blob digest) and its load-time options (``LoadSpec``). It is
  served by a READY runner with the same digest and spec that has a free slot
  (``num_parallel`` requests in flight at once); otherwise it waits in one FIFO queue. Requests
  for one model are served in arrival order; a request for another model may overtake them.
* Loading is single-flight: at most one runner is LOADING at a time. Requests for a loading
  model wait for it.
* Before a load, room is made: while ``max_loaded`` runners exist or the memory estimate of the
  new model does not fit the budget beside the live runners, the least recently used *idle*
  runner is stopped (a runner with requests in flight is never stopped or expired, nor is an
  idle one that a waiting request is about to use). A stopping runner keeps its memory and its
  place among ``max_loaded`` until it has exited, so the load waits for that exit (Ollama
  waits for the unload too); only as many runners are stopped as the new one needs once they
  are gone. If nothing is idle, the load waits. When no other runner exists at all the load
  proceeds even if the estimate says it will not fit (the runner's own failure is then
  reported), as Ollama does.
* A runner whose load options differ from the waiting request's is drained and replaced: it
  takes no new requests, and is stopped as soon as it is idle.
* keep_alive: each request that carries one overwrites its runner's duration; the countdown
  starts when the runner's in-flight count drops to 0 and ``expires_at = idle_since + keep_alive``;
  negative means forever; 0 means "stop as soon as idle". A runner is not expired while a
  request it can serve is waiting for it (Ollama counts a queued request as a reference), so a
  fresh load with keep_alive 0 serves its request before it stops. An empty generate/chat with
  keep_alive 0 (UNLOAD) replies at once and stops the runner when idle.
* ``max_queue`` bounds the waiting requests; beyond it the new request is rejected with 503
  ``server busy, please try again.  maximum pending requests exceeded``. A rejected request
  leaves no trace: nothing is evicted, drained or loaded for it.
* A runner that fails to load fails every waiting request for its model and spec (500, its
  message); a runner that exits unexpectedly is forgotten, its in-flight requests learn of it from
  the runner pipe, and the next request loads a fresh one.

Runner states and the events that move them (anything else leaves the state unchanged)::

    (new) --SpawnRunner--> LOADING --RunnerReady--> READY --StopRunner--> STOPPING
    LOADING --RunnerFailed/RunnerExited--> (gone)      STOPPING --RunnerExited--> (gone)
    READY --RunnerExited/RunnerFailed--> (gone)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Union

from .errors import PollamaError

FOREVER = -1
# The shortcuts in ``step`` (deciding only what an event can affect) must give exactly the
# commands of the full pass; tests run both ways and compare.
FAST_PATHS = True
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"


class SchedulerError(PollamaError):
    """An event that cannot happen (a bug in the adapter), e.g. a duplicate request id."""


# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSpec:
    """Load-time options; runners with different specs are not interchangeable."""

    num_ctx: int = 4096
    num_batch: int = 512
    num_gpu: int = -1
    num_thread: int = 0
    use_mmap: bool | None = None


class Kind(enum.Enum):
    GENERATE = "generate"  # needs a slot on a runner
    LOAD = "load"  # empty prompt: load the model, reply, take no slot
    UNLOAD = "unload"  # empty prompt with keep_alive 0

    def __repr__(self) -> str:  # valid Python, as every event's repr must be
        return f"Kind.{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    id: int
    model: str  # model blob digest: what identifies a runner's weights
    name: str = ""  # display name, for /api/ps
    spec: LoadSpec = field(default_factory=LoadSpec)
    kind: Kind = Kind.GENERATE
    keep_alive: int | None = None  # ns; None = leave as is; negative (FOREVER) = never expire
    size: int = 0  # memory estimate of a runner for this model and spec (bytes)
    size_vram: int = 0  # of which on GPUs
    gpu_layers: int = -1  # layers to offload, decided by core.memory.fit
    # Slots (requests decoded together) a runner loaded for this request gets, decided with
    # the memory estimate (core.memory.parallel_choices); 0 = Config.num_parallel.
    num_parallel: int = 0

    def __post_init__(self) -> None:
        if self.num_parallel < 0:
            raise SchedulerError(f"bad request num_parallel {self.num_parallel}")
        if self.size < 0 or self.size_vram < 0 or self.size_vram > self.size:
            raise SchedulerError(f"bad request sizes {self.size}/{self.size_vram}")


class RunnerState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    STOPPING = "stopping"

    def __repr__(self) -> str:
        return f"RunnerState.{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Runner:
    id: int
    model: str
    name: str
    spec: LoadSpec
    state: RunnerState
    size: int
    size_vram: int
    keep_alive: int  # ns; negative (FOREVER) = never expire
    in_flight: tuple[int, ...] = ()
    last_used: int = 0
    expires_at: int | None = None  # set while idle; None while busy or kept forever
    draining: bool = False  # takes no new requests (reload, unload)
    num_parallel: int = 0  # requests in flight at once; 0 = Config.num_parallel

    @property
    def idle(self) -> bool:
        return not self.in_flight


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    num_parallel: int = 1
    max_loaded: int = 3
    max_queue: int = 512
    memory_budget: int = 0  # bytes available for models; 0 = unlimited
    default_keep_alive: int = 5 * 60 * 1_000_000_000

    def __post_init__(self) -> None:
        if self.num_parallel < 1 or self.max_loaded < 1 or self.max_queue < 0:
            raise SchedulerError(f"bad scheduler config {self!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    config: Config = field(default_factory=Config)
    runners: tuple[Runner, ...] = ()
    waiting: tuple[Request, ...] = ()
    next_runner_id: int = 1

    def runner(self, runner_id: int) -> Runner | None:
        for r in self.runners:
            if r.id == runner_id:
                return r
        return None

    @property
    def loading(self) -> Runner | None:
        for r in self.runners:
            if r.state is RunnerState.LOADING:
                return r
        return None


# ---------------------------------------------------------------------------------------------
# Events (facts)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestQueued:
    request: Request


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFinished:
    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestCancelled:
    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerReady:
    runner_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerFailed:
    runner_id: int
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerExited:
    runner_id: int
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    pass


Event = Union[RequestQueued, RequestFinished, RequestCancelled, RunnerReady, RunnerFailed,
              RunnerExited, Tick]


# ---------------------------------------------------------------------------------------------
# Commands (orders)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpawnRunner:
    runner_id: int
    model: str
    spec: LoadSpec
    gpu_layers: int = -1
    num_parallel: int = 0  # sequences the runner decodes together; 0 = Config.num_parallel


@dataclass(frozen=True, slots=True, kw_only=True)
class StopRunner:
    runner_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch:
    request_id: int
    runner_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    request_id: int
    status: int
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyLoaded:
    request_id: int
    runner_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyUnloaded:
    request_id: int


Command = Union[SpawnRunner, StopRunner, Dispatch, Reject, ReplyLoaded, ReplyUnloaded]


# ---------------------------------------------------------------------------------------------
# The reducer


def step(state: State, event: Event, now: int) -> tuple[State, tuple[Command, ...], int | None]:
    """Apply one event at time ``now``; return the new state, the commands, the next deadline."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise SchedulerError(f"unknown event {event!r}")
    b = _Builder(state, now)
    handler(b, event)
    new_id = event.request.id if isinstance(event, RequestQueued) else None
    expired = b.expire()
    # The previous step ended at a fixpoint (a Tick then would do nothing). When an event
    # changed little, only what it can affect needs deciding; the full pass would make the
    # same decisions and re-decide everything else with no effect:
    if expired or not FAST_PATHS:
        b.schedule(new_id)
    elif new_id is not None:
        b.schedule_arrival()  # only the new request (last in the queue)
    elif isinstance(event, Tick):
        pass  # nothing expired: nothing changed
    elif b.focus is not None:
        b.schedule(None, only=b.focus)  # a slot freed on a still-busy runner of this model
    else:
        b.schedule(new_id)
    # The result is a fixpoint (a Tick at the same ``now`` would do nothing), except when a
    # pass enabled work for a request it had already passed: a runner spared from eviction
    # for a waiting LOAD is still idle once the LOAD is answered, or a LOAD that set
    # keep_alive 0 left an idle runner due now. Then one more pass; each one answers,
    # stops or spawns something, so this ends.
    while b.again:
        b.again = False
        b.expire()
        b.schedule(None)
    new = b.build()
    return new, tuple(b.commands), next_deadline(new)


def next_deadline(state: State) -> int | None:
    times = [r.expires_at for r in state.runners
             if r.state is RunnerState.READY and r.idle and r.expires_at is not None]
    return min(times) if times else None


_RUNNER_SLOTS = tuple((f, getattr(Runner, f)) for f in Runner.__slots__)
_STATE_SLOTS = tuple(getattr(State, f) for f in ("config", "runners", "waiting",
                                                  "next_runner_id"))


def slots(runner: Runner, config: Config) -> int:
    """Requests ``runner`` serves at once: the slots it was loaded with."""
    return runner.num_parallel or config.num_parallel


def _evolve(runner: Runner, **changes: Any) -> Runner:
    """``dataclasses.replace`` for Runner, without its generic machinery (the reducer's hot
    path: a step copies a few runners). Runner has no ``__post_init__`` to skip."""
    new = object.__new__(Runner)
    for name, slot in _RUNNER_SLOTS:
        slot.__set__(new, changes[name] if name in changes else slot.__get__(runner))
    return new


class _Builder:
    """Mutable scratch space for one step: the new state is built up, commands appended."""

    def __init__(self, state: State, now: int) -> None:
        # Lists edited in place during the step (the items stay immutable); ``build()`` makes
        # the new State once at the end, instead of one State per edit.
        self.config = state.config
        self.runners: list[Runner] = list(state.runners)
        self.waiting: list[Request] = list(state.waiting)
        self.next_runner_id = state.next_runner_id
        self.now = now
        self.commands: list[Command] = []
        self.again = False  # this pass enabled work for a request it had already passed
        self.focus: str | None = None  # the event only freed a slot for this model's requests

    def build(self) -> State:
        # Once per step: set the slots directly (State has no __post_init__ to skip).
        new = object.__new__(State)
        _STATE_SLOTS[0].__set__(new, self.config)
        _STATE_SLOTS[1].__set__(new, tuple(self.runners))
        _STATE_SLOTS[2].__set__(new, tuple(self.waiting))
        _STATE_SLOTS[3].__set__(new, self.next_runner_id)
        return new

    def runner(self, runner_id: int) -> Runner | None:
        for r in self.runners:
            if r.id == runner_id:
                return r
        return None

    def loading(self) -> Runner | None:
        for r in self.runners:
            if r.state is RunnerState.LOADING:
                return r
        return None

    # -- state edits --------------------------------------------------------------------------
    def put_runner(self, runner: Runner) -> None:
        for i, r in enumerate(self.runners):
            if r.id == runner.id:
                self.runners[i] = runner
                return

    def drop_runner(self, runner_id: int) -> None:
        self.runners = [r for r in self.runners if r.id != runner_id]

    def set_waiting(self, waiting: list[Request]) -> None:
        self.waiting = waiting

    def emit(self, command: Command) -> None:
        self.commands.append(command)

    def stop(self, runner: Runner) -> None:
        self.put_runner(_evolve(runner, state=RunnerState.STOPPING, expires_at=None,
                                draining=True))
        self.emit(StopRunner(runner_id=runner.id))

    def went_idle(self, runner: Runner, **changes: Any) -> Runner:
        """A runner just finished its last request: start its keep-alive countdown.

        ``changes`` are applied first; the result is one copy of the runner.
        """
        state = changes.get("state", runner.state)
        changes["last_used"] = self.now
        if state is RunnerState.READY:
            keep = changes.get("keep_alive", runner.keep_alive)
            draining = changes.get("draining", runner.draining)
            if keep < 0 and not draining:  # any negative: forever
                changes["expires_at"] = None
            else:
                changes["expires_at"] = self.now + (0 if draining else keep)
        return _evolve(runner, **changes)

    # -- periodic passes ----------------------------------------------------------------------
    def expire(self) -> bool:
        """Stop idle runners whose keep-alive ran out; True if any was stopped.

        A runner that a waiting request can use is spared: the request is served by it in
        this step (Ollama's queued request holds a reference), instead of a needless reload.
        """
        due = [r for r in self.runners
               if r.state is RunnerState.READY and r.idle and r.expires_at is not None
               and r.expires_at <= self.now]
        if not due:
            return False
        wanted = self.wanted()
        stopped = False
        for r in due:
            if r.draining or (r.model, r.spec) not in wanted:
                self.stop(r)
                stopped = True
        return stopped

    def wanted(self) -> set[tuple[str, LoadSpec]]:
        """(model, spec) of the runners that waiting requests can use."""
        return {(q.model, q.spec) for q in self.waiting if q.kind is not Kind.UNLOAD}

    def schedule(self, new_id: int | None, only: str | None = None) -> None:
        """Serve waiting requests in FIFO order; make room and load when needed.

        ``new_id`` is the request that just arrived (last in the queue): if it would have to
        wait in a full queue it is rejected, and whatever was arranged for it is undone.
        """
        limit = self.config.max_queue
        blocked: set[str] = set()  # models whose earlier request is waiting (FIFO per model)
        kept: list[Request] = []
        for req in self.waiting:
            if (req.model in blocked or (only is not None and req.model != only)) \
                    and req.id != new_id:  # the common case in a long queue
                kept.append(req)
                continue
            full = req.id == new_id and len(kept) >= limit
            if req.model not in blocked:
                saved = (list(self.runners), self.next_runner_id, len(self.commands)) \
                    if full else None
                if self._try_serve(req):
                    continue
                if saved is not None:
                    self.runners, self.next_runner_id = saved[0], saved[1]
                    del self.commands[saved[2]:]
            if full:
                self.emit(Reject(request_id=req.id, status=503, message=BUSY_MESSAGE))
                continue
            blocked.add(req.model)
            kept.append(req)
        self.set_waiting(kept)

    def schedule_arrival(self) -> None:
        """``schedule`` for the request that just arrived (last in the queue) when the
        requests before it are known to stay blocked."""
        req = self.waiting[-1]
        earlier = len(self.waiting) - 1
        blocked = any(q.model == req.model for q in self.waiting[:-1])
        full = earlier >= self.config.max_queue
        if not blocked:
            saved = (list(self.runners), self.next_runner_id, len(self.commands)) \
                if full else None
            if self._try_serve(req):
                self.waiting.pop()
                return
            if saved is not None:
                self.runners, self.next_runner_id = saved[0], saved[1]
                del self.commands[saved[2]:]
        if full:
            self.waiting.pop()
            self.emit(Reject(request_id=req.id, status=503, message=BUSY_MESSAGE))

    def _try_serve(self, req: Request) -> bool:
        """Serve ``req`` now if possible (True), else arrange what it waits for (False)."""
        cfg = self.config
        same_model = [r for r in self.runners if r.model == req.model]
        if req.kind is Kind.UNLOAD:
            for r in same_model:
                if r.state is RunnerState.READY:
                    r = _evolve(r, draining=True, keep_alive=0)
                    if r.idle:
                        self.stop(r)
                    else:
                        self.put_runner(r)
            self.emit(ReplyUnloaded(request_id=req.id))
            return True
        for r in same_model:
            if r.state is RunnerState.LOADING and r.spec == req.spec:
                return False
            if r.state is not RunnerState.READY or r.draining:
                continue
            if r.spec != req.spec:
                # Reload: drain the old runner; it stops once idle.
                r = _evolve(r, draining=True)
                if r.idle:
                    self.stop(r)
                else:
                    self.put_runner(r)
                continue
            return self._use(r, req, cfg)
        return self._load(req)

    def _use(self, r: Runner, req: Request, cfg: Config) -> bool:
        if req.kind is Kind.GENERATE and len(r.in_flight) >= slots(r, cfg):
            return False
        keep = r.keep_alive if req.keep_alive is None else req.keep_alive
        if req.kind is Kind.GENERATE:
            r = _evolve(r, keep_alive=keep, last_used=self.now,
                        in_flight=r.in_flight + (req.id,), expires_at=None)
            self.put_runner(r)
            self.emit(Dispatch(request_id=req.id, runner_id=r.id))
        else:
            if r.idle:
                r = self.went_idle(r, keep_alive=keep)
                if r.expires_at is not None and r.expires_at <= self.now:
                    self.again = True  # keep_alive 0: due now, expire it in another pass
            else:
                r = _evolve(r, keep_alive=keep, last_used=self.now)
            self.put_runner(r)
            self.emit(ReplyLoaded(request_id=req.id, runner_id=r.id))
        return True

    def _load(self, req: Request) -> bool:
        if self.loading() is not None:
            return False
        if not self._make_room(req):
            return False
        cfg = self.config
        rid = self.next_runner_id
        keep = cfg.default_keep_alive if req.keep_alive is None else req.keep_alive
        runner = Runner(id=rid, model=req.model, name=req.name, spec=req.spec,
                        state=RunnerState.LOADING, size=req.size, size_vram=req.size_vram,
                        keep_alive=keep, last_used=self.now, num_parallel=req.num_parallel)
        self.runners.append(runner)
        self.next_runner_id = rid + 1
        self.emit(SpawnRunner(runner_id=rid, model=req.model, spec=req.spec,
                              gpu_layers=req.gpu_layers, num_parallel=req.num_parallel))
        return False  # the request waits for RunnerReady

    def _make_room(self, req: Request) -> bool:
        """Stop idle runners (least recently used first) until the new one fits.

        True when it fits now. A stopping runner still holds its place and memory, so it
        counts for "fits now"; but once the runners that are not stopping leave room, no more
        are stopped: the load waits for the exits. An idle runner that a waiting request can
        use is not a candidate: that request is served by it in this pass, and evicting it
        would only reload it (a livelock when the two loads cannot fit together).
        """
        cfg = self.config
        wanted: set[tuple[str, LoadSpec]] | None = None

        def fits(runners: list[Runner]) -> bool:
            return len(runners) < cfg.max_loaded and (
                cfg.memory_budget == 0
                or sum(r.size for r in runners) + req.size <= cfg.memory_budget)

        while True:
            live = list(self.runners)
            if not live:
                return True
            if fits(live):
                return True
            active = [r for r in live if r.state is not RunnerState.STOPPING]
            if fits(active):
                return False  # enough is stopping already: wait for the exits
            idle = [r for r in active if r.state is RunnerState.READY and r.idle]
            if idle:
                if wanted is None:
                    wanted = self.wanted()
                spared = [r for r in idle if not r.draining and (r.model, r.spec) in wanted]
                if spared:
                    self.again = True  # they may be idle again once their request is served
                    idle = [r for r in idle if r not in spared]
            if not idle:
                return False  # wait for in-flight work or a stopping runner to exit
            idle.sort(key=lambda r: (r.last_used, r.id))
            self.stop(idle[0])


# ---------------------------------------------------------------------------------------------
# Event handlers


def _on_queued(b: _Builder, ev: RequestQueued) -> None:
    req = ev.request
    rid = req.id
    if rid in [q.id for q in b.waiting] or any(rid in r.in_flight for r in b.runners):
        raise SchedulerError(f"duplicate request id {rid}")
    b.waiting.append(req)


def _on_finished(b: _Builder, ev: RequestFinished | RequestCancelled) -> None:
    rid = ev.request_id
    for r in b.runners:  # the usual case: it was running
        if rid in r.in_flight:
            in_flight = tuple(i for i in r.in_flight if i != rid)
            if in_flight:
                r = _evolve(r, in_flight=in_flight)
                b.focus = r.model
            else:
                r = b.went_idle(r, in_flight=in_flight)
            b.put_runner(r)
            return
    ids = [q.id for q in b.waiting]
    if rid in ids:  # cancelled while waiting
        del b.waiting[ids.index(rid)]
    # Unknown ids are fine: the runner it ran on may have exited already.


def _on_ready(b: _Builder, ev: RunnerReady) -> None:
    r = b.runner(ev.runner_id)
    if r is None or r.state is not RunnerState.LOADING:
        return
    b.put_runner(b.went_idle(r, state=RunnerState.READY))


def _on_failed(b: _Builder, ev: RunnerFailed) -> None:
    r = b.runner(ev.runner_id)
    if r is None:
        return
    b.drop_runner(r.id)
    if r.state is RunnerState.LOADING:
        _fail_waiting(b, r, ev.message)


def _on_exited(b: _Builder, ev: RunnerExited) -> None:
    r = b.runner(ev.runner_id)
    if r is None:
        return
    b.drop_runner(r.id)
    if r.state is RunnerState.LOADING:
        _fail_waiting(b, r, ev.message or "llama runner process has terminated")


def _fail_waiting(b: _Builder, r: Runner, message: str) -> None:
    kept = []
    for q in b.waiting:
        if q.model == r.model and q.spec == r.spec and q.kind is not Kind.UNLOAD:
            b.emit(Reject(request_id=q.id, status=500, message=message))
        else:
            kept.append(q)
    b.set_waiting(kept)


def _on_tick(b: _Builder, ev: Tick) -> None:
    pass  # expiry happens in every step


_HANDLERS: dict[type[Any], Any] = {
    RequestQueued: _on_queued,
    RequestFinished: _on_finished,
    RequestCancelled: _on_finished,
    RunnerReady: _on_ready,
    RunnerFailed: _on_failed,
    RunnerExited: _on_exited,
    Tick: _on_tick,
}


# ---------------------------------------------------------------------------------------------
# /api/ps

FOREVER_NS = 2**63 - 1  # Go's largest time.Duration: "forever" shows as about year 2318


def time_to_expiry(runner: Runner, now: int) -> int:
    """Nanoseconds from ``now`` until ``runner`` expires, as /api/ps shows it: forever is
    Go's largest Duration; a busy or loading runner has not started its countdown, so it shows
    its whole keep_alive."""
    if runner.keep_alive == FOREVER and not runner.draining:
        return FOREVER_NS
    if runner.expires_at is not None:
        return runner.expires_at - now
    return max(runner.keep_alive, 0)


def by_expiry(runners: tuple[Runner, ...] | list[Runner], now: int) -> list[tuple[Runner, int]]:
    """``(runner, time_to_expiry)`` for each runner, the latest expiry first (Ollama's order)."""
    out = [(r, time_to_expiry(r, now)) for r in runners]
    out.sort(key=lambda e: e[1], reverse=True)
    return out

