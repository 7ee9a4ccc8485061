"""The scheduler: which models are in memory, who runs where, who waits, who is turned away.

A pure reducer in the Sans-IO style (aioquic's time-as-input, h2's state table)::

    step(state, event, now) -> (state, commands, next_deadline)

Events are facts the adapter observed (a request arrived, a runner became ready, a runner
exited, the timer fired); commands are what the adapter must do (spawn or stop a runner,
dispatch a request to a runner, reject a request, reply that a model was loaded/unloaded).
``now`` and every time are integer nanoseconds of a monotonic clock owned by the adapter; the
adapter arms one timer at ``next_deadline`` and feeds ``Tick`` when it fires.

Theory of operation (Ollama's ``server/sched.go``: ``processPending``, ``processCompleted``,
``findRunnerToUnload``, ``needsReload``):

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
  ``server busy, please try again.  maximum pending requests exceeded`` (``ErrMaxQueue``). A
  rejected request leaves no trace: nothing is evicted, drained or loaded for it.
* A runner that fails to load fails every waiting request for its model and spec (500, its
  message); a runner that exits unexpectedly is forgotten, its in-flight requests learn of it from
  the runner pipe, and the next request loads a fresh one.

Nodes (a Ray cluster, ``Config.cluster``; adapters/ray_cluster.py). On one machine there is one
implicit node, ``LOCAL``, whose budget is ``Config.memory_budget``: everything above holds per
node. In a cluster the nodes come and go by ``NodeJoined``/``NodeLost`` and each has its own
memory budget, its own ``max_loaded`` and its own single-flight load:

* A request goes to a READY runner of its model and spec with a free slot, the least loaded
  first (fewest in flight). When every such replica is busy and the model has fewer than
  ``num_replicas`` (the request's hint, else ``Config.num_replicas``), one more is loaded on a
  node that has none of it yet and room without evicting anything.
* A new runner goes to a node where it fits now, preferring one that has the model's blobs
  cached (a runner of it was READY there, or the node said so when it joined), then the most
  free memory. If none fits, the least recently used idle runners of one node are stopped, a
  node with the blobs first; a node with nothing loaded is the last resort (as on one machine,
  it loads whatever the estimate says).
* A node lost takes its runners with it (their in-flight requests learn of it from the runner
  stream); requests that waited for a load there are placed again on the nodes left. With no
  node at all, requests wait for one (within ``max_queue``).

The code has two layers. The runner lifecycle is a table, ``LIFECYCLE``: ``(RunnerState,
RunnerInput) -> (side effect, next state)``, as h2's ``stream.py`` has it. The decisions are
small pure functions over ``State`` that return the new state and the commands: ``expire``
(keep-alive), ``pick_victim`` and ``make_room`` (eviction), ``admit`` (serve one request, or
arrange what it waits for) and ``schedule`` (one FIFO pass over the queue). ``step`` is
``apply_event`` (the event's own effect) then ``settle`` (expire and schedule until nothing more
can be done at ``now``: a ``Tick`` at the same time would change nothing). As every state it
returns is settled, a step re-decides only what its event may have changed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Union

from .errors import RUNNER_TERMINATED, SchedulerError

__all__ = [
    "BUSY_MESSAGE", "FOREVER", "FOREVER_NS", "LIFECYCLE", "LOCAL", "NODE_LOST", "TERMINATED",
    "Command", "Config", "Dispatch", "Event", "Kind", "LoadSpec", "Node", "NodeJoined",
    "NodeLost", "Reject", "ReplyLoaded", "ReplyUnloaded", "Request",
    "RequestCancelled", "RequestFinished", "RequestQueued", "Runner", "RunnerExited",
    "RunnerFailed", "RunnerInput", "RunnerReady", "RunnerState", "SchedulerError", "SpawnRunner",
    "State", "StopRunner", "Tick", "admit", "apply_event", "by_expiry", "expire", "make_room",
    "next_deadline", "nodes", "pick_victim", "place", "replicas", "schedule", "settle", "slots",
    "step", "time_to_expiry", "transition",
]

FOREVER = -1
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
TERMINATED = RUNNER_TERMINATED  # a load that ended without a message
LOCAL = ""  # the one node of a single machine
NODE_LOST = "node lost"


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
    replicas: int = 0  # runners of this model wanted when busy; 0 = Config.num_replicas

    def __post_init__(self) -> None:
        if self.num_parallel < 0 or self.replicas < 0:
            raise SchedulerError(
                f"bad request num_parallel/replicas {self.num_parallel}/{self.replicas}")
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
    expires_at: int | None = None  # set only while READY and idle, unless kept forever
    draining: bool = False  # takes no new requests (reload, unload)
    num_parallel: int = 0  # requests in flight at once; 0 = Config.num_parallel
    node: str = LOCAL  # where it runs

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
    num_replicas: int = 1  # runners of one model (on distinct nodes) when it is busy
    cluster: bool = False  # nodes come from NodeJoined/NodeLost; else the one LOCAL node

    def __post_init__(self) -> None:
        if (self.num_parallel < 1 or self.max_loaded < 1 or self.max_queue < 0
                or self.num_replicas < 1):
            raise SchedulerError(f"bad scheduler config {self!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """A machine runners are placed on."""

    id: str
    memory: int = 0  # bytes available for models; 0 = unlimited
    devices: tuple[str, ...] = ()  # what it has besides CPUs (e.g. "GPU:0"), as it said
    blobs: frozenset[str] = frozenset()  # model digests it has in its store


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    config: Config = field(default_factory=Config)
    runners: tuple[Runner, ...] = ()
    waiting: tuple[Request, ...] = ()
    next_runner_id: int = 1
    nodes: tuple[Node, ...] = ()  # in a cluster; on one machine see ``nodes()``

    def runner(self, runner_id: int) -> Runner | None:
        for r in self.runners:
            if r.id == runner_id:
                return r
        return None

    def loading(self, node: str) -> Runner | None:
        """The runner loading on ``node``: at most one at a time."""
        for r in self.runners:
            if r.state is RunnerState.LOADING and r.node == node:
                return r
        return None


def slots(runner: Runner, config: Config) -> int:
    """Requests ``runner`` serves at once: the slots it was loaded with."""
    return runner.num_parallel or config.num_parallel


def replicas(request: Request, config: Config) -> int:
    """Runners of ``request``'s model wanted when they are all busy."""
    return request.replicas or config.num_replicas


def nodes(state: State) -> tuple[Node, ...]:
    """Where runners can go: the cluster's nodes, or the one LOCAL node of a machine."""
    if state.config.cluster:
        return state.nodes
    return (Node(id=LOCAL, memory=state.config.memory_budget),)


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


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeJoined:
    """A node is up (or said again what it has): its budget, devices and cached models."""

    node_id: str
    memory: int = 0  # bytes for models; 0 = unlimited
    devices: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # digests of the models whose blobs it has


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLost:
    node_id: str
    message: str = NODE_LOST


Event = Union[RequestQueued, RequestFinished, RequestCancelled, RunnerReady, RunnerFailed,
              RunnerExited, Tick, NodeJoined, NodeLost]


# ---------------------------------------------------------------------------------------------
# Commands (orders)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpawnRunner:
    runner_id: int
    model: str
    spec: LoadSpec
    gpu_layers: int = -1
    num_parallel: int = 0  # sequences the runner decodes together; 0 = Config.num_parallel
    node: str = LOCAL


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
# State edits shared by the layers below: a new State with one part changed.


def _put(state: State, runner: Runner) -> State:
    """``state`` with ``runner`` in place of the runner that has its id."""
    runners = tuple([runner if r.id == runner.id else r for r in state.runners])
    return State(config=state.config, runners=runners, waiting=state.waiting,
                 next_runner_id=state.next_runner_id, nodes=state.nodes)


def _drop(state: State, runner: Runner) -> State:
    """``state`` without ``runner``."""
    runners = tuple([r for r in state.runners if r.id != runner.id])
    return State(config=state.config, runners=runners, waiting=state.waiting,
                 next_runner_id=state.next_runner_id, nodes=state.nodes)


def _queue(state: State, waiting: tuple[Request, ...]) -> State:
    """``state`` with ``waiting`` as its queue."""
    return State(config=state.config, runners=state.runners, waiting=waiting,
                 next_runner_id=state.next_runner_id, nodes=state.nodes)


def _serving(runner: Runner, in_flight: tuple[int, ...], keep_alive: int, last_used: int,
             runner_state: RunnerState | None = None) -> Runner:
    """``runner`` (READY, or moving to ``runner_state``) with these requests in flight and
    this keep_alive, last used at ``last_used``: busy, it has no countdown; idle, its
    countdown starts at ``last_used``.

    Written out because ``dataclasses.replace`` costs nearly twice as much, and this is the
    hot path: a copy per dispatch and per finish.
    """
    expires_at = None if in_flight else _expires_at(keep_alive, runner.draining, last_used)
    return Runner(id=runner.id, model=runner.model, name=runner.name, spec=runner.spec,
                  state=runner_state or runner.state, size=runner.size,
                  size_vram=runner.size_vram, keep_alive=keep_alive, in_flight=in_flight,
                  last_used=last_used, expires_at=expires_at, draining=runner.draining,
                  num_parallel=runner.num_parallel, node=runner.node)


def _expires_at(keep_alive: int, draining: bool, now: int) -> int | None:
    """When a runner that goes idle at ``now`` is due: at once if it is draining, never for a
    negative keep_alive, else ``keep_alive`` later."""
    if draining:
        return now
    return None if keep_alive < 0 else now + keep_alive


def _wanted(state: State, runner: Runner) -> bool:
    """A waiting request can use ``runner``: one of its model and spec."""
    return any(q.model == runner.model and q.spec == runner.spec and q.kind is not Kind.UNLOAD
               for q in state.waiting)


# ---------------------------------------------------------------------------------------------
# The runner lifecycle
#
#   (new) --admit: SpawnRunner--> LOADING --READY--> READY --STOP: StopRunner--> STOPPING
#   LOADING --FAILED/EXITED: fail its waiting requests--> (gone)
#   LOADING --LOST--> (gone; its waiting requests are placed again)
#   READY --FAILED/EXITED/LOST--> (gone)              STOPPING --FAILED/EXITED/LOST--> (gone)
#
# A late or repeated RunnerReady changes nothing. A runner is stopped only when it is READY and
# idle (expired, evicted, drained, unloaded): STOP in another state is a bug in the policies
# below and raises. Inside READY, requests come and go (``admit``, ``_finish``) and the
# keep-alive countdown runs while it is idle.


class RunnerInput(enum.Enum):
    READY = "ready"  # RunnerReady: the model is loaded
    FAILED = "failed"  # RunnerFailed: the runner reported an error
    EXITED = "exited"  # RunnerExited: the process is gone
    STOP = "stop"  # a policy decided to stop it
    LOST = "lost"  # NodeLost: its node is gone, and the runner with it


# A side effect gets the state (without the runner when it is gone), the runner as it was, its
# next state, ``now`` and the event's message. One that moves the runner puts it in its next
# state.
Effect = Callable[[State, Runner, RunnerState | None, int, str],
                  tuple[State, tuple[Command, ...]]]


def _nothing(state: State, runner: Runner, target: RunnerState | None, now: int,
             message: str) -> tuple[State, tuple[()]]:
    return state, ()


def _start_countdown(state: State, runner: Runner, target: RunnerState | None, now: int,
                     message: str) -> tuple[State, tuple[()]]:
    """Loaded: idle until the waiting requests take it, so its keep-alive starts now."""
    return _put(state, _serving(runner, (), runner.keep_alive, now, target)), ()


def _fail_waiting(state: State, runner: Runner, target: RunnerState | None, now: int,
                  message: str) -> tuple[State, tuple[Reject, ...]]:
    """The load failed: so does every request waiting for this model and spec (Ollama
    answers them with the runner's error)."""
    kept: list[Request] = []
    rejects: list[Reject] = []
    for q in state.waiting:
        if q.model == runner.model and q.spec == runner.spec and q.kind is not Kind.UNLOAD:
            rejects.append(Reject(request_id=q.id, status=500, message=message))
        else:
            kept.append(q)
    return _queue(state, tuple(kept)), tuple(rejects)


def _send_stop(state: State, runner: Runner, target: RunnerState | None, now: int,
               message: str) -> tuple[State, tuple[StopRunner]]:
    """It takes no requests and has no countdown; it holds its place until it has exited."""
    assert target is not None  # a move, not a runner gone
    return (_put(state, replace(runner, state=target, expires_at=None, draining=True)),
            (StopRunner(runner_id=runner.id),))


LIFECYCLE: dict[tuple[RunnerState, RunnerInput], tuple[Effect, RunnerState | None]] = {
    # (state, input):
    #     (side effect, next state; None: gone)
    (RunnerState.LOADING, RunnerInput.READY):
        (_start_countdown, RunnerState.READY),
    (RunnerState.LOADING, RunnerInput.FAILED):
        (_fail_waiting, None),
    (RunnerState.LOADING, RunnerInput.EXITED):
        (_fail_waiting, None),
    (RunnerState.LOADING, RunnerInput.LOST):
        (_nothing, None),
    (RunnerState.READY, RunnerInput.READY):
        (_nothing, RunnerState.READY),
    (RunnerState.READY, RunnerInput.FAILED):
        (_nothing, None),  # in-flight requests hear it from the pipe
    (RunnerState.READY, RunnerInput.EXITED):
        (_nothing, None),
    (RunnerState.READY, RunnerInput.LOST):
        (_nothing, None),
    (RunnerState.READY, RunnerInput.STOP):
        (_send_stop, RunnerState.STOPPING),
    (RunnerState.STOPPING, RunnerInput.READY):
        (_nothing, RunnerState.STOPPING),
    (RunnerState.STOPPING, RunnerInput.FAILED):
        (_nothing, None),
    (RunnerState.STOPPING, RunnerInput.EXITED):
        (_nothing, None),
    (RunnerState.STOPPING, RunnerInput.LOST):
        (_nothing, None),
}


def transition(state: State, runner: Runner, input: RunnerInput, now: int,
               message: str = "") -> tuple[State, tuple[Command, ...]]:
    """Feed ``input`` to ``runner`` (as it is in ``state``): its row of ``LIFECYCLE``."""
    try:
        effect, target = LIFECYCLE[runner.state, input]
    except KeyError:
        raise SchedulerError(
            f"{input.name} for runner {runner.id} in state {runner.state.name}") from None
    if target is None:
        state = _drop(state, runner)
    return effect(state, runner, target, now, message)


# ---------------------------------------------------------------------------------------------
# Policies: pure functions over State that return the new state and the commands


def expire(state: State, now: int) -> tuple[State, tuple[Command, ...]]:
    """Stop idle runners whose keep-alive ran out.

    A runner that a waiting request can use is spared: the request is served by it in this
    step (Ollama's queued request holds a reference), instead of a needless reload.
    """
    due = [r for r in state.runners if r.expires_at is not None and r.expires_at <= now]
    if not due:
        return state, ()
    commands: list[Command] = []
    for r in due:
        if r.draining or not _wanted(state, r):
            state, stopped = transition(state, r, RunnerInput.STOP, now)
            commands += stopped
    return state, tuple(commands)


def pick_victim(state: State, node: str = LOCAL) -> Runner | None:
    """The runner of ``node`` to stop to make room: the least recently used idle one.

    An idle runner that a waiting request can use is not a candidate: that request is served
    by it in this pass, and evicting it would only reload it (a livelock when the two loads
    cannot fit together).
    """
    idle = [r for r in state.runners if r.node == node and r.state is RunnerState.READY
            and r.idle and (r.draining or not _wanted(state, r))]
    return min(idle, key=lambda r: (r.last_used, r.id), default=None)


def _on(state: State, node: Node) -> tuple[Runner, ...]:
    """The runners on ``node`` (on one machine: all of them)."""
    if not state.config.cluster:
        return state.runners
    return tuple([r for r in state.runners if r.node == node.id])


def _fits(runners: Iterable[Runner], request: Request, node: Node, config: Config) -> bool:
    """There is a place among ``max_loaded`` and ``node``'s memory for ``request``'s runner
    beside ``runners``."""
    runners = tuple(runners)
    return len(runners) < config.max_loaded and (
        node.memory == 0 or sum(r.size for r in runners) + request.size <= node.memory)


def _room_coming(state: State, request: Request, node: Node) -> bool:
    """Runners are stopping on ``node``, and once they have exited ``request`` fits."""
    runners = _on(state, node)
    live = [r for r in runners if r.state is not RunnerState.STOPPING]
    return len(live) < len(runners) and _fits(live, request, node, state.config)


def make_room(state: State, request: Request, now: int,
              node: Node | None = None) -> tuple[State, tuple[Command, ...], bool]:
    """Stop idle runners of ``node`` (``pick_victim``) until a runner for ``request`` fits
    there; True when it fits now. ``node``: the LOCAL one by default.

    A stopping runner still holds its place and memory, so it counts for "fits now"; but once
    the runners that are not stopping leave room, no more are stopped: the load waits for the
    exits. With no runner at all it fits, whatever the estimate says.
    """
    node = node or nodes(state)[0]
    commands: tuple[Command, ...] = ()
    while _on(state, node) and not _fits(_on(state, node), request, node, state.config):
        if _room_coming(state, request, node):
            return state, commands, False  # enough is stopping already: wait for the exits
        victim = pick_victim(state, node.id)
        if victim is None:
            return state, commands, False  # wait for in-flight work or a stopping runner
        state, stopped = transition(state, victim, RunnerInput.STOP, now)
        commands += stopped
    return state, commands, True


def _free(state: State, node: Node) -> float:
    if node.memory == 0:
        return float("inf")
    return node.memory - sum(r.size for r in _on(state, node))


def place(state: State, request: Request, now: int, scale_out: bool = False
          ) -> tuple[State, tuple[Command, ...], Node | None]:
    """The node for a new runner of ``request``, after making room there; None when it waits.

    Candidates: nodes not loading anything now (a load is single-flight per node) and, for an
    extra replica (``scale_out``), without a runner of the model. First a node where it fits
    now (its blobs cached first, then the most free memory); an extra replica goes only there.
    Else room is made on one node: a node already freeing enough is waited for; else the first
    where idle runners can be stopped, a node with the blobs first; a node with nothing loaded
    comes last, taking the load whatever the estimate says.
    """
    config = state.config
    if not config.cluster:  # one machine: wait for its load, or make room on it
        if state.loading(LOCAL) is not None:
            return state, (), None
        node = nodes(state)[0]
        state, stopped, fits = make_room(state, request, now, node)
        return state, stopped, node if fits else None
    has_model = {r.node for r in state.runners if r.model == request.model}
    candidates = [n for n in nodes(state) if state.loading(n.id) is None
                  and not (scale_out and n.id in has_model)]
    fitting = [n for n in candidates if _fits(_on(state, n), request, n, config)]
    if fitting:
        return state, (), min(fitting, key=lambda n: (request.model not in n.blobs,
                                                      -_free(state, n), n.id))
    if scale_out:
        return state, (), None
    if any(_room_coming(state, request, n) for n in candidates):
        return state, (), None
    for n in sorted(candidates, key=lambda n: (not _on(state, n), request.model not in n.blobs,
                                               n.id)):
        after, stopped, fits = make_room(state, request, now, n)
        if fits:
            return after, stopped, n
        if stopped:
            return after, stopped, None
    return state, (), None


def admit(state: State, request: Request, now: int) -> tuple[State, tuple[Command, ...], bool]:
    """Serve ``request`` now (True), or arrange what it waits for (False): drain a runner of
    its model with other load options, make room, spawn its runner (or one more replica)."""
    if request.kind is Kind.UNLOAD:
        return _unload(state, request, now)
    commands: tuple[Command, ...] = ()
    best: Runner | None = None  # the least loaded READY replica with room for it
    replicas_ready = 0
    for r in state.runners:  # as they were: a drain below changes only ``r``
        if r.model != request.model:
            continue
        if r.state is RunnerState.LOADING:
            if r.spec == request.spec:
                return state, commands, False  # single flight: it waits for this load
        elif r.state is RunnerState.READY and not r.draining:
            if r.spec == request.spec:
                if not state.config.cluster:  # one node, so this is the one replica
                    state, used, served = _use(state, r, request, now)
                    return state, commands + used, served
                replicas_ready += 1
                if ((request.kind is not Kind.GENERATE
                        or len(r.in_flight) < slots(r, state.config))
                        and (best is None or len(r.in_flight) < len(best.in_flight))):
                    best = r
            else:  # a reload: drain the old runner, stop it once idle
                state, stopped = _drain(state, replace(r, draining=True), now)
                commands += stopped
    if best is not None:
        state, used, served = _use(state, best, request, now)
        return state, commands + used, served
    if replicas_ready:
        if replicas_ready >= replicas(request, state.config):
            return state, commands, False  # every replica is busy: wait for a slot
        state, stopped, node = place(state, request, now, scale_out=True)
    else:
        state, stopped, node = place(state, request, now)
    commands += stopped
    if node is None:
        return state, commands, False
    return _spawn(state, request, now, commands, node.id)


def _drain(state: State, runner: Runner, now: int) -> tuple[State, tuple[Command, ...]]:
    """Put the draining ``runner``; stop it at once if it is idle."""
    if runner.idle:
        return transition(state, runner, RunnerInput.STOP, now)
    return _put(state, runner), ()


def _unload(state: State, request: Request,
            now: int) -> tuple[State, tuple[Command, ...], bool]:
    """Reply at once; the model's runners take no more requests and stop once idle."""
    commands: tuple[Command, ...] = ()
    for r in state.runners:
        if r.model == request.model and r.state is RunnerState.READY:
            state, stopped = _drain(state, replace(r, draining=True, keep_alive=0), now)
            commands += stopped
    return state, commands + (ReplyUnloaded(request_id=request.id),), True


def _use(state: State, runner: Runner, request: Request,
         now: int) -> tuple[State, tuple[Command, ...], bool]:
    """Serve ``request`` on ``runner``, a READY one of its model and spec, if it has a slot."""
    keep = runner.keep_alive if request.keep_alive is None else request.keep_alive
    command: Command
    if request.kind is Kind.GENERATE:
        if len(runner.in_flight) >= slots(runner, state.config):
            return state, (), False
        runner = _serving(runner, runner.in_flight + (request.id,), keep, now)
        command = Dispatch(request_id=request.id, runner_id=runner.id)
    else:  # a LOAD takes no slot; on an idle runner its keep_alive restarts the countdown
        runner = _serving(runner, runner.in_flight, keep, now)
        command = ReplyLoaded(request_id=request.id, runner_id=runner.id)
    return _put(state, runner), (command,), True


def _spawn(state: State, request: Request, now: int, commands: tuple[Command, ...],
           node: str) -> tuple[State, tuple[Command, ...], bool]:
    """Load a runner for ``request`` on ``node``; the request waits for RunnerReady."""
    config = state.config
    runner_id = state.next_runner_id
    keep = config.default_keep_alive if request.keep_alive is None else request.keep_alive
    runner = Runner(id=runner_id, model=request.model, name=request.name, spec=request.spec,
                    state=RunnerState.LOADING, size=request.size, size_vram=request.size_vram,
                    keep_alive=keep, last_used=now, num_parallel=request.num_parallel,
                    node=node)
    spawn = SpawnRunner(runner_id=runner_id, model=request.model, spec=request.spec,
                        gpu_layers=request.gpu_layers, num_parallel=request.num_parallel,
                        node=node)
    return State(config=config, runners=state.runners + (runner,), waiting=state.waiting,
                 next_runner_id=runner_id + 1, nodes=state.nodes), commands + (spawn,), False


def schedule(state: State, now: int, arrival: bool = False,
             models: frozenset[str] | None = None) -> tuple[State, tuple[Command, ...]]:
    """One pass over the queue in FIFO order: ``admit`` the first waiting request of each
    model; the later ones of a model whose first still waits stay behind it.

    ``models`` limits the pass to the models whose first request may have become servable
    since the state was settled (None: all); the others would only wait again. With
    ``arrival``, the last request in the queue has just arrived and is decided in any case: if
    it would have to wait in a full queue it is rejected (503), and what ``admit`` arranged for
    it is dropped. ``admit`` sees the queue as it was when the pass began.
    """
    waiting = state.waiting
    earlier = waiting[:-1] if arrival else waiting
    gone: set[int] = set()  # requests answered in this pass
    commands: list[Command] = []
    if models is not None and not models:  # nothing to re-decide: all wait as they are
        if not arrival:
            return state, ()
        blocked = {q.model for q in earlier}
        earlier = ()
    else:
        blocked = set()  # models whose earlier request still waits (FIFO per model)
    for request in earlier:
        model = request.model
        if model in blocked:
            continue  # the common case in a long queue
        if models is not None and model not in models:
            blocked.add(model)
            continue
        state, arranged, served = admit(state, request, now)
        commands += arranged
        if served:
            gone.add(request.id)
        else:
            blocked.add(model)
    if arrival:
        request = waiting[-1]
        full = len(waiting) - 1 - len(gone) >= state.config.max_queue
        if request.model in blocked:  # FIFO: behind an earlier request of its model
            served = False
        else:
            after, arranged, served = admit(state, request, now)
            if served or not full:  # else it is rejected: what was arranged for it is dropped
                state = after
                commands += arranged
        if served:
            gone.add(request.id)
        elif full:
            commands.append(Reject(request_id=request.id, status=503, message=BUSY_MESSAGE))
            gone.add(request.id)
    if len(gone) == 1 and waiting[-1].id in gone:  # the usual: the arrival was served at once
        state = _queue(state, waiting[:-1])
    elif gone:
        state = _queue(state, tuple([q for q in waiting if q.id not in gone]))
    return state, tuple(commands)


# ---------------------------------------------------------------------------------------------
# The reducer


def step(state: State, event: Event, now: int) -> tuple[State, tuple[Command, ...], int | None]:
    """Apply one event at time ``now``; return the new state, the commands, the next deadline."""
    state, commands, models = apply_event(state, event, now)
    state, settled = settle(state, now, isinstance(event, RequestQueued), models)
    return state, commands + settled, next_deadline(state)


def apply_event(state: State, event: Event,
                now: int) -> tuple[State, tuple[Command, ...], frozenset[str] | None]:
    """The event's own effect: the new state, its commands, and the models whose first waiting
    request it may have made servable (None: any of them)."""
    match event:
        case RequestQueued(request=request):
            return _enqueue(state, request), (), frozenset()  # ``settle`` decides it
        case RequestFinished(request_id=request_id) | RequestCancelled(request_id=request_id):
            return _finish(state, request_id, now)
        case RunnerReady(runner_id=runner_id):
            return _report(state, runner_id, RunnerInput.READY, now, "")
        case RunnerFailed(runner_id=runner_id, message=message):
            return _report(state, runner_id, RunnerInput.FAILED, now, message)
        case RunnerExited(runner_id=runner_id, message=message):
            return _report(state, runner_id, RunnerInput.EXITED, now, message or TERMINATED)
        case Tick():
            return state, (), frozenset()  # only time passed: ``expire`` in ``settle``
        case NodeJoined():
            return _join(state, event), (), None
        case NodeLost(node_id=node_id, message=message):
            return _lose(state, node_id, now, message)
        case _:
            raise SchedulerError(f"unknown event {event!r}")


def settle(state: State, now: int, arrival: bool = False,
           models: frozenset[str] | None = None) -> tuple[State, tuple[Command, ...]]:
    """Expire and schedule until nothing more can be done at ``now``.

    Every state ``step`` returns is settled, so only what the event changed needs deciding:
    ``models`` and the ``arrival`` (see ``schedule``), or every model once ``expire`` stopped a
    runner. A LOAD reply takes no slot, so the runner it names is still idle: due now if the
    LOAD set keep_alive 0, or no longer wanted by anyone waiting (``pick_victim`` spared it for
    this LOAD). One more pass over everything settles it; passes repeat only while LOADs are
    answered, so this ends.
    """
    commands: tuple[Command, ...] = ()
    while True:
        state, stopped = expire(state, now)
        state, decided = schedule(state, now, arrival, None if stopped else models)
        commands += stopped + decided
        if ReplyLoaded not in map(type, decided):
            return state, commands
        arrival, models = False, None


def _enqueue(state: State, request: Request) -> State:
    request_id = request.id
    if (request_id in [q.id for q in state.waiting]
            or any(request_id in r.in_flight for r in state.runners)):
        raise SchedulerError(f"duplicate request id {request_id}")
    return _queue(state, state.waiting + (request,))


def _finish(state: State, request_id: int,
            now: int) -> tuple[State, tuple[()], frozenset[str] | None]:
    """A request ended (finished or cancelled): free its slot, or take it off the queue.
    Unknown ids are fine: the runner it ran on may have exited already."""
    for r in state.runners:
        if request_id in r.in_flight:
            in_flight = tuple([i for i in r.in_flight if i != request_id])
            if in_flight:  # still busy: a slot freed for its model; last used as before
                return _put(state, _serving(r, in_flight, r.keep_alive, r.last_used)), (), \
                    frozenset((r.model,))
            return _put(state, _serving(r, (), r.keep_alive, now)), (), None  # idle from now
    waiting = tuple([q for q in state.waiting if q.id != request_id])
    return (state if len(waiting) == len(state.waiting) else _queue(state, waiting)), (), None


def _report(state: State, runner_id: int, input: RunnerInput, now: int,
            message: str) -> tuple[State, tuple[Command, ...], None]:
    """What a runner process reported; about a runner already forgotten, nothing."""
    runner = state.runner(runner_id)
    if runner is None:
        return state, (), None
    state, commands = transition(state, runner, input, now, message)
    if input is RunnerInput.READY and state.config.cluster:
        state = _with_nodes(state, tuple([
            replace(n, blobs=n.blobs | {runner.model}) if n.id == runner.node else n
            for n in state.nodes]))
    return state, commands, None


def _with_nodes(state: State, nodes: tuple[Node, ...]) -> State:
    return State(config=state.config, runners=state.runners, waiting=state.waiting,
                 next_runner_id=state.next_runner_id, nodes=nodes)


def _join(state: State, event: NodeJoined) -> State:
    """A node is up: add it, or update what it said before (its cached models add up)."""
    if not state.config.cluster:
        raise SchedulerError(f"node {event.node_id!r} joined, but this is not a cluster")
    old = [n for n in state.nodes if n.id == event.node_id]
    node = Node(id=event.node_id, memory=event.memory, devices=tuple(event.devices),
                blobs=frozenset(event.models).union(*[n.blobs for n in old]))
    others = tuple([n for n in state.nodes if n.id != event.node_id])
    return _with_nodes(state, tuple(sorted(others + (node,), key=lambda n: n.id)))


def _lose(state: State, node_id: str, now: int,
          message: str) -> tuple[State, tuple[Command, ...], None]:
    """A node is gone and its runners with it; whoever waited for them is placed again."""
    commands: tuple[Command, ...] = ()
    for runner in [r for r in state.runners if r.node == node_id]:
        state, lost = transition(state, runner, RunnerInput.LOST, now, message)
        commands += lost
    return _with_nodes(state, tuple([n for n in state.nodes if n.id != node_id])), commands, None


def next_deadline(state: State) -> int | None:
    """When the next idle runner is due: the adapter's one timer."""
    times = [r.expires_at for r in state.runners if r.expires_at is not None]
    return min(times) if times else None


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
