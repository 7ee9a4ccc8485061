"""core/scheduler.py: one test per rule of the docstring, exhaustive tables (every
representative state x every event; every runner state x every input of ``LIFECYCLE``), a
Hypothesis state machine against a naive model (STYLE.md, the three layers), and long random
mixes that settle the same whether a step re-decides what its event changed or everything."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from pollama.core import scheduler as sc
from pollama.core.scheduler import (
    slots,
    BUSY_MESSAGE,
    FOREVER,
    Command,
    Config,
    Dispatch,
    Event,
    Kind,
    LoadSpec,
    ReplyLoaded,
    ReplyUnloaded,
    Reject,
    Request,
    RequestCancelled,
    RequestFinished,
    RequestQueued,
    RunnerExited,
    RunnerFailed,
    RunnerReady,
    RunnerState,
    SchedulerError,
    SpawnRunner,
    State,
    StopRunner,
    Tick,
    step,
)
from tests.bench.test_scheduler_bench import CONFIG as BENCH_CONFIG
from tests.bench.test_scheduler_bench import realistic_mix

S = 1_000_000_000  # one second in ns
DEFAULT = Config().default_keep_alive
SPEC2 = LoadSpec(num_ctx=8192)


class Sim:
    """Feeds events through the reducer, keeping the state, the clock and the last deadline."""

    def __init__(self, **config: int) -> None:
        self.state = State(config=Config(**config))
        self.now = 0
        self.deadline: int | None = None

    def __call__(self, event: Event, *, at: int | None = None) -> list[Command]:
        if at is not None:
            assert at >= self.now
            self.now = at
        self.state, commands, self.deadline = step(self.state, event, self.now)
        check_state(self.state, self.now)
        return list(commands)

    def queue(self, rid: int, model: str = "a", *, at: int | None = None,
              **kw: object) -> list[Command]:
        return self(RequestQueued(
            request=Request(id=rid, model=model, **kw)),  # type: ignore[arg-type]
            at=at)

    def finish(self, rid: int, **kw: int) -> list[Command]:
        return self(RequestFinished(request_id=rid), **kw)

    def ready(self, runner_id: int) -> list[Command]:
        return self(RunnerReady(runner_id=runner_id))

    def tick(self, at: int) -> list[Command]:
        return self(Tick(), at=at)

    def runner(self, runner_id: int) -> sc.Runner:
        r = self.state.runner(runner_id)
        assert r is not None
        return r

    def loaded(self, rid: int, model: str = "a", **kw: object) -> int:
        """Queue ``rid`` for a model not yet loaded, make the runner ready; the runner id."""
        cmds = self.queue(rid, model, **kw)
        spawn = [c for c in cmds if isinstance(c, SpawnRunner)]
        assert len(spawn) == 1, cmds
        assert self.ready(spawn[0].runner_id)[-1:] in (
            [Dispatch(request_id=rid, runner_id=spawn[0].runner_id)],
            [ReplyLoaded(request_id=rid, runner_id=spawn[0].runner_id)])
        return spawn[0].runner_id


def spawn(rid: int, model: str = "a", spec: LoadSpec = LoadSpec()) -> SpawnRunner:
    return SpawnRunner(runner_id=rid, model=model, spec=spec)


def check_state(state: State, now: int) -> None:
    """Invariants of every state the reducer returns (docstring rules, structurally)."""
    cfg = state.config
    runners = state.runners
    assert len({r.id for r in runners}) == len(runners)
    assert all(r.id < state.next_runner_id for r in runners)
    # single-flight loading
    assert sum(r.state is RunnerState.LOADING for r in runners) <= 1
    # max_loaded counts every runner, stopping ones too: they hold their place until exit
    assert len(runners) <= cfg.max_loaded
    # the memory budget holds for live runners (stopping ones included) unless one runner
    # is alone, which may exceed it ("the load proceeds even if the estimate says ...")
    if cfg.memory_budget and len(runners) > 1:
        assert sum(r.size for r in runners) <= cfg.memory_budget
    ids: set[int] = set()
    for r in runners:
        assert len(r.in_flight) <= slots(r, cfg)
        if r.state is not RunnerState.READY:
            assert not r.in_flight and r.expires_at is None
        elif r.in_flight:
            assert r.expires_at is None
        else:
            assert not r.draining, "a drained runner is stopped as soon as it is idle"
            if r.keep_alive < 0:
                assert r.expires_at is None
            else:
                # expiry is never late: a runner due at ``now`` has been stopped in this step
                assert r.expires_at is not None and r.expires_at > now
        for i in r.in_flight:
            assert i not in ids
            ids.add(i)
    for q in state.waiting:
        assert q.id not in ids
        ids.add(q.id)
    assert len(state.waiting) <= cfg.max_queue
    # work-conserving: the first waiting request of each model cannot be served right now
    first: dict[str, Request] = {}
    for q in state.waiting:
        first.setdefault(q.model, q)
    for q in first.values():
        assert q.kind is not Kind.UNLOAD
        for r in runners:
            if (r.model == q.model and r.spec == q.spec and r.state is RunnerState.READY
                    and not r.draining):
                assert q.kind is Kind.GENERATE and len(r.in_flight) >= slots(r, cfg)
    expiries = [r.expires_at for r in runners if r.state is RunnerState.READY and r.idle
                and r.expires_at is not None]
    assert sc.next_deadline(state) == (min(expiries) if expiries else None)
    # a fixpoint: everything that can be done at ``now`` was done, a Tick changes nothing
    again, commands, _ = step(state, Tick(), now)
    assert commands == () and again == state, commands


# =============================================================================================
# 1. One test per rule


def test_first_request_spawns_runner_and_is_dispatched_when_ready() -> None:
    sim = Sim()
    assert sim.queue(1, size=10, size_vram=4, gpu_layers=7) == [
        SpawnRunner(runner_id=1, model="a", spec=LoadSpec(), gpu_layers=7)]
    assert sim.runner(1).state is RunnerState.LOADING
    assert sim.deadline is None
    assert sim.ready(1) == [Dispatch(request_id=1, runner_id=1)]
    assert sim.runner(1).in_flight == (1,)
    assert sim.runner(1).size == 10 and sim.runner(1).size_vram == 4


def test_request_for_ready_runner_is_dispatched_at_once() -> None:
    sim = Sim()
    sim.loaded(1)
    sim.finish(1)
    assert sim.queue(2) == [Dispatch(request_id=2, runner_id=1)]


def test_num_parallel_slots_then_wait_for_a_free_slot() -> None:
    sim = Sim(num_parallel=2)
    sim.loaded(1)
    assert sim.queue(2) == [Dispatch(request_id=2, runner_id=1)]
    assert sim.queue(3) == []
    assert [q.id for q in sim.state.waiting] == [3]
    assert sim.finish(2) == [Dispatch(request_id=3, runner_id=1)]
    assert sim.runner(1).in_flight == (1, 3)


def test_a_runner_gets_the_slots_its_first_request_asked_for() -> None:
    """``Request.num_parallel`` (decided with the memory estimate) sizes a new runner; the
    config's value is only the default. Later requests use the runner as it was loaded."""
    sim = Sim(num_parallel=1)
    spawn = [c for c in sim.queue(1, num_parallel=3) if isinstance(c, SpawnRunner)]
    assert spawn == [SpawnRunner(runner_id=1, model="a", spec=LoadSpec(), num_parallel=3)]
    sim.ready(1)
    assert sim.queue(2, num_parallel=1) == [Dispatch(request_id=2, runner_id=1)]
    assert sim.queue(3) == [Dispatch(request_id=3, runner_id=1)]
    assert sim.queue(4, num_parallel=3) == []  # three in flight: the slots are full
    assert sim.finish(1) == [Dispatch(request_id=4, runner_id=1)]
    assert slots(sim.runner(1), sim.state.config) == 3
    with pytest.raises(SchedulerError):
        Request(id=5, model="a", num_parallel=-1)


def test_fifo_per_model_a_later_request_never_overtakes() -> None:
    sim = Sim(num_parallel=1)
    sim.loaded(1)
    assert sim.queue(2) == []  # waits for the slot
    # a LOAD takes no slot and could be answered at once, but request 2 came first
    assert sim.queue(3, kind=Kind.LOAD) == []
    assert sim.queue(4) == []
    assert sim.finish(1) == [Dispatch(request_id=2, runner_id=1),
                             ReplyLoaded(request_id=3, runner_id=1)]
    assert sim.finish(2) == [Dispatch(request_id=4, runner_id=1)]


def test_fifo_per_model_across_specs() -> None:
    # request 2 wants a reload; request 3 (old spec) must not overtake it on the old runner
    sim = Sim(num_parallel=2, max_loaded=1)
    sim.loaded(1)
    assert sim.queue(2, spec=SPEC2) == []  # runner 1 drained; busy, so no room yet
    assert sim.runner(1).draining
    assert sim.queue(3) == []  # runner 1 has a free slot and the right spec, but FIFO
    assert sim.finish(1) == [StopRunner(runner_id=1)]
    assert sim(RunnerExited(runner_id=1)) == [spawn(2, spec=SPEC2)]
    assert sim.ready(2) == [Dispatch(request_id=2, runner_id=2)]
    assert [q.id for q in sim.state.waiting] == [3]  # needs yet another reload


def test_another_model_may_overtake() -> None:
    sim = Sim(num_parallel=1, max_loaded=2)
    sim.loaded(1, "a")
    assert sim.queue(2, "a") == []
    assert sim.queue(3, "b") == [spawn(2, "b")]
    assert sim.ready(2) == [Dispatch(request_id=3, runner_id=2)]
    assert [q.id for q in sim.state.waiting] == [2]


def test_single_flight_loading() -> None:
    sim = Sim(max_loaded=3)
    assert sim.queue(1, "a") == [spawn(1, "a")]
    assert sim.queue(2, "b") == []  # waits while a loads
    assert sim.queue(3, "a") == []
    assert sim.ready(1) == [Dispatch(request_id=1, runner_id=1), spawn(2, "b")]
    assert sim.queue(4, "c") == []
    assert sim.ready(2) == [Dispatch(request_id=2, runner_id=2), spawn(3, "c")]


# -- keep_alive --------------------------------------------------------------------------------


def test_keep_alive_default() -> None:
    sim = Sim(default_keep_alive=7 * S)
    sim.loaded(1)
    assert sim.deadline is None  # busy: no countdown
    sim.finish(1, at=10 * S)
    assert sim.runner(1).expires_at == 17 * S
    assert sim.deadline == 17 * S


def test_keep_alive_request_override_and_absent_leaves_it() -> None:
    sim = Sim()
    sim.loaded(1, keep_alive=30 * S)
    sim.finish(1, at=S)
    assert sim.deadline == 31 * S
    sim.queue(2)  # no keep_alive: the runner keeps 30 s
    sim.finish(2, at=2 * S)
    assert sim.deadline == 32 * S
    sim.queue(3, keep_alive=3 * S)
    sim.finish(3, at=4 * S)
    assert sim.deadline == 7 * S


def test_keep_alive_forever_has_no_deadline() -> None:
    sim = Sim()
    sim.loaded(1, keep_alive=FOREVER)
    sim.finish(1, at=S)
    assert sim.deadline is None and sim.runner(1).expires_at is None
    assert sim.tick(10**15) == []
    assert sim.runner(1).state is RunnerState.READY


def test_keep_alive_any_negative_means_forever() -> None:
    # docstring: "negative means forever" (not only FOREVER == -1)
    sim = Sim()
    sim.loaded(1, keep_alive=-5 * S)
    assert sim.finish(1, at=S) == []
    assert sim.deadline is None
    assert sim.tick(10**15) == []


def test_keep_alive_zero_stops_right_after_the_request() -> None:
    sim = Sim()
    sim.loaded(1)
    sim.queue(2, keep_alive=0)  # waits for the slot
    sim.finish(1)
    assert sim.finish(2, at=S) == [StopRunner(runner_id=1)]
    assert sim.runner(1).state is RunnerState.STOPPING
    assert sim.deadline is None


def test_keep_alive_zero_on_a_fresh_load_serves_the_request_first() -> None:
    sim = Sim()
    assert sim.queue(1, keep_alive=0) == [spawn(1)]
    assert sim.ready(1) == [Dispatch(request_id=1, runner_id=1)]
    assert sim.finish(1) == [StopRunner(runner_id=1)]


def test_keep_alive_zero_runner_serves_requests_already_waiting_for_it() -> None:
    # Ollama counts a queued request as a reference: the runner is not unloaded under it.
    sim = Sim(num_parallel=1)
    sim.loaded(1, keep_alive=0)
    sim.queue(2)
    assert sim.finish(1) == [Dispatch(request_id=2, runner_id=1)]
    assert sim.finish(2) == [StopRunner(runner_id=1)]


def test_expiry_at_exactly_expires_at_via_tick() -> None:
    sim = Sim()
    sim.loaded(1, keep_alive=5 * S)
    sim.finish(1, at=S)
    assert sim.deadline == 6 * S
    assert sim.tick(6 * S - 1) == []
    assert sim.deadline == 6 * S
    assert sim.tick(6 * S) == [StopRunner(runner_id=1)]
    assert sim.deadline is None
    assert sim(RunnerExited(runner_id=1), at=7 * S) == []
    assert sim.state.runners == ()


def test_late_tick_still_expires() -> None:
    sim = Sim()
    sim.loaded(1, keep_alive=5 * S)
    sim.finish(1)
    assert sim.tick(100 * S) == [StopRunner(runner_id=1)]


def test_new_request_cancels_the_countdown() -> None:
    sim = Sim()
    sim.loaded(1, keep_alive=5 * S)
    sim.finish(1, at=S)
    assert sim.deadline == 6 * S
    assert sim.queue(2, at=4 * S) == [Dispatch(request_id=2, runner_id=1)]
    assert sim.deadline is None and sim.runner(1).expires_at is None
    assert sim.tick(6 * S) == []  # the old deadline is gone
    sim.finish(2, at=8 * S)
    assert sim.deadline == 13 * S


def test_request_arriving_exactly_at_expiry_is_served_by_that_runner() -> None:
    sim = Sim()
    sim.loaded(1, keep_alive=5 * S)
    sim.finish(1, at=S)
    assert sim.queue(2, at=6 * S) == [Dispatch(request_id=2, runner_id=1)]


def test_load_request_restarts_the_countdown_of_an_idle_runner() -> None:
    sim = Sim()
    sim.loaded(1, keep_alive=5 * S)
    sim.finish(1, at=S)
    assert sim.queue(2, kind=Kind.LOAD, keep_alive=10 * S, at=3 * S) == [
        ReplyLoaded(request_id=2, runner_id=1)]
    assert sim.deadline == 13 * S


def test_next_deadline_is_the_earliest_expiry() -> None:
    sim = Sim(max_loaded=3)
    sim.loaded(1, "a", keep_alive=10 * S)
    sim.loaded(2, "b", keep_alive=3 * S)
    sim.loaded(3, "c", keep_alive=FOREVER)
    sim.finish(1, at=S)
    assert sim.deadline == 11 * S
    sim.finish(2, at=2 * S)
    assert sim.deadline == 5 * S
    sim.finish(3, at=3 * S)
    assert sim.deadline == 5 * S
    assert sim.tick(5 * S) == [StopRunner(runner_id=2)]
    assert sim.deadline == 11 * S
    assert sim.tick(11 * S) == [StopRunner(runner_id=1)]
    assert sim.deadline is None


# -- eviction ----------------------------------------------------------------------------------


def test_lru_eviction_when_max_loaded_reached() -> None:
    sim = Sim(max_loaded=2)
    sim.loaded(1, "a")
    sim.loaded(2, "b")
    sim.finish(2, at=S)  # b idle since 1 s
    sim.finish(1, at=2 * S)  # a idle since 2 s: b is the least recently used
    # only b is stopped, and its place counts until it has exited (Ollama waits too)
    assert sim.queue(3, "c") == [StopRunner(runner_id=2)]
    assert sim.state.loading(sc.LOCAL) is None
    assert sim(RunnerExited(runner_id=2)) == [spawn(3, "c")]
    assert sim.runner(1).state is RunnerState.READY


def test_lru_eviction_counts_last_use_not_load_order() -> None:
    sim = Sim(max_loaded=2)
    sim.loaded(1, "a")
    sim.loaded(2, "b")
    sim.finish(1, at=S)
    sim.finish(2, at=2 * S)
    sim.queue(3, "a", at=3 * S)  # a used again: b is now the least recently used
    sim.finish(3, at=4 * S)
    assert sim.queue(4, "c", at=5 * S) == [StopRunner(runner_id=2)]


def test_lru_eviction_waits_for_exit_when_memory_requires_it() -> None:
    sim = Sim(max_loaded=2, memory_budget=10)
    sim.loaded(1, "a", size=4)
    sim.loaded(2, "b", size=4)
    sim.finish(1, at=S)
    sim.finish(2, at=2 * S)
    assert sim.queue(3, "c", size=4) == [StopRunner(runner_id=1)]
    assert sim.state.loading(sc.LOCAL) is None  # a still holds its memory
    assert sim(RunnerExited(runner_id=1)) == [spawn(3, "c")]


def test_memory_budget_eviction_stops_only_what_is_needed() -> None:
    sim = Sim(max_loaded=3, memory_budget=12)
    sim.loaded(1, "a", size=4)
    sim.loaded(2, "b", size=4)
    sim.finish(1, at=S)
    sim.finish(2, at=2 * S)
    # 4 + 4 + 8 > 12; stopping a alone makes room (4 + 8 <= 12): b stays loaded
    assert sim.queue(3, "c", size=8) == [StopRunner(runner_id=1)]
    assert sim(RunnerExited(runner_id=1)) == [spawn(3, "c")]
    assert sim.runner(2).state is RunnerState.READY


def test_memory_budget_eviction_of_several_runners() -> None:
    sim = Sim(max_loaded=3, memory_budget=10)
    sim.loaded(1, "a", size=4)
    sim.loaded(2, "b", size=4)
    sim.finish(2, at=S)
    sim.finish(1, at=2 * S)
    assert sim.queue(3, "c", size=8) == [StopRunner(runner_id=2), StopRunner(runner_id=1)]
    assert sim(RunnerExited(runner_id=1)) == []
    assert sim(RunnerExited(runner_id=2)) == [spawn(3, "c")]


def test_eviction_spares_an_idle_runner_a_waiting_request_can_use() -> None:
    # Found by the state machine (a livelock): b's room-making stopped the idle runner that
    # request 3 was about to use, 3 then reloaded a, which again left no room for b, ...
    sim = Sim(num_parallel=1, max_loaded=2, memory_budget=8)
    sim.queue(1, "a", size=3)
    sim.queue(2, "b", size=6)
    sim.queue(3, "a", size=3)
    assert sim.ready(1) == [Dispatch(request_id=1, runner_id=1)]
    assert sim.finish(1) == [Dispatch(request_id=3, runner_id=1)]
    assert sim.finish(3) == [StopRunner(runner_id=1)]
    assert sim(RunnerExited(runner_id=1)) == [spawn(2, "b")]


def test_a_runner_spared_for_a_load_request_is_evicted_in_the_same_step() -> None:
    # Found by the state machine: b was spared for the waiting LOAD, which took no slot, so
    # b stayed idle and request 2 waited for an unrelated event (up to b's keep-alive).
    sim = Sim(max_loaded=1)
    sim.queue(1, "b")
    sim.queue(2, "a")  # waits: single-flight
    sim(RequestCancelled(request_id=1))
    sim.queue(3, "b", kind=Kind.LOAD)
    assert sim.ready(1) == [ReplyLoaded(request_id=3, runner_id=1), StopRunner(runner_id=1)]
    assert sim(RunnerExited(runner_id=1)) == [spawn(2, "a")]


def test_a_model_larger_than_the_budget_loads_when_alone() -> None:
    sim = Sim(memory_budget=10)
    assert sim.queue(1, "a", size=50) == [spawn(1, "a")]


def test_a_busy_runner_is_never_stopped() -> None:
    sim = Sim(max_loaded=1)
    sim.loaded(1, "a")
    assert sim.queue(2, "b") == []
    assert sim.tick(10**15) == []
    assert sim.finish(1) == [StopRunner(runner_id=1)]
    assert sim(RunnerExited(runner_id=1)) == [spawn(2, "b")]


def test_a_busy_runner_is_not_stopped_for_memory_either() -> None:
    sim = Sim(max_loaded=3, memory_budget=10)
    sim.loaded(1, "a", size=6)
    sim.loaded(2, "b", size=2)
    sim.finish(2)
    assert sim.queue(3, "c", size=6) == [StopRunner(runner_id=2)]  # idle b goes, busy a stays
    assert sim(RunnerExited(runner_id=2)) == []  # 6 + 6 > 10: wait for a
    assert sim.finish(1) == [StopRunner(runner_id=1)]
    assert sim(RunnerExited(runner_id=1)) == [spawn(3, "c")]


# -- reload ------------------------------------------------------------------------------------


def test_reload_of_an_idle_runner_when_spec_differs() -> None:
    sim = Sim()
    sim.loaded(1)
    sim.finish(1)
    assert sim.queue(2, spec=SPEC2) == [StopRunner(runner_id=1), spawn(2, spec=SPEC2)]


def test_reload_drains_a_busy_runner_then_stops_it() -> None:
    sim = Sim(num_parallel=2, max_loaded=1)
    sim.loaded(1)
    assert sim.queue(2, spec=SPEC2) == []
    r = sim.runner(1)
    assert r.draining and r.state is RunnerState.READY
    assert sim.finish(1) == [StopRunner(runner_id=1)]
    assert sim(RunnerExited(runner_id=1)) == [spawn(2, spec=SPEC2)]
    assert sim.ready(2) == [Dispatch(request_id=2, runner_id=2)]


def test_drained_runner_takes_no_new_requests() -> None:
    sim = Sim(num_parallel=2, max_loaded=2)
    sim.loaded(1)
    sim.queue(2, spec=SPEC2)
    assert sim.runner(1).draining
    assert sim.ready(2) == [Dispatch(request_id=2, runner_id=2)]
    # runner 1 still has a free slot and the right spec, but it is draining
    assert sim.queue(3) == []
    assert sim.runner(1).in_flight == (1,)


# -- LOAD and UNLOAD ---------------------------------------------------------------------------


def test_unload_of_an_idle_runner_replies_and_stops() -> None:
    sim = Sim()
    sim.loaded(1)
    sim.finish(1)
    assert sim.queue(2, kind=Kind.UNLOAD, keep_alive=0) == [
        StopRunner(runner_id=1), ReplyUnloaded(request_id=2)]


def test_unload_of_a_busy_runner_replies_at_once_and_stops_after() -> None:
    sim = Sim()
    sim.loaded(1, keep_alive=FOREVER)
    assert sim.queue(2, kind=Kind.UNLOAD, keep_alive=0) == [ReplyUnloaded(request_id=2)]
    assert sim.runner(1).draining
    assert sim.finish(1) == [StopRunner(runner_id=1)]


def test_unload_of_a_model_not_loaded_replies() -> None:
    sim = Sim()
    assert sim.queue(1, "zzz", kind=Kind.UNLOAD, keep_alive=0) == [ReplyUnloaded(request_id=1)]
    assert sim.state.runners == ()


def test_load_replies_without_taking_a_slot() -> None:
    sim = Sim(num_parallel=1)
    assert sim.queue(1, kind=Kind.LOAD) == [spawn(1)]
    assert sim.ready(1) == [ReplyLoaded(request_id=1, runner_id=1)]
    assert sim.runner(1).in_flight == ()
    assert sim.deadline == DEFAULT
    assert sim.queue(2) == [Dispatch(request_id=2, runner_id=1)]  # at capacity now
    assert sim.queue(3, kind=Kind.LOAD) == [ReplyLoaded(request_id=3, runner_id=1)]
    assert sim.runner(1).in_flight == (2,)


# -- the queue bound ---------------------------------------------------------------------------


def test_queue_bound_rejects_the_one_beyond_max_queue_with_503() -> None:
    sim = Sim(max_queue=2)
    sim.queue(1)  # loading; waits
    assert sim.queue(2) == []
    assert sim.queue(3) == [Reject(request_id=3, status=503, message=BUSY_MESSAGE)]
    assert BUSY_MESSAGE == "server busy, please try again.  maximum pending requests exceeded"
    assert [q.id for q in sim.state.waiting] == [1, 2]
    assert sim.queue(4, "b") == [Reject(request_id=4, status=503, message=BUSY_MESSAGE)]
    # requests that need no waiting are still served
    assert sim.ready(1) == [Dispatch(request_id=1, runner_id=1)]
    assert sim.queue(5, "zzz", kind=Kind.UNLOAD, keep_alive=0) == [ReplyUnloaded(request_id=5)]


def test_queue_bound_zero_serves_only_what_needs_no_wait() -> None:
    sim = Sim(max_queue=0, num_parallel=1)
    assert sim.queue(1) == [Reject(request_id=1, status=503, message=BUSY_MESSAGE)]
    assert sim.state.runners == ()


def test_a_rejected_request_causes_no_eviction_no_load_no_drain() -> None:
    sim = Sim(max_queue=1, max_loaded=2, num_parallel=1)
    sim.loaded(1, "a")
    sim.loaded(2, "c")
    sim.finish(2)
    assert sim.queue(3, "a") == []  # the queue is now full
    before = sim.state
    assert sim.queue(4, "b") == [Reject(request_id=4, status=503, message=BUSY_MESSAGE)]
    assert sim.queue(5, "c", spec=SPEC2) == [Reject(request_id=5, status=503,
                                                    message=BUSY_MESSAGE)]
    assert sim.state == before  # c was neither evicted nor drained, b not spawned
    assert sim.queue(6, "c") == [Dispatch(request_id=6, runner_id=2)]  # no wait: served


# -- runner failures ---------------------------------------------------------------------------


def test_runner_failed_fails_waiting_requests_for_its_model_and_spec() -> None:
    sim = Sim(max_loaded=3)
    assert sim.queue(1, "a") == [spawn(1, "a")]
    sim.queue(2, "b")
    sim.queue(3, "a", kind=Kind.LOAD)
    sim.queue(4, "c")
    assert sim(RunnerFailed(runner_id=1, message="out of memory")) == [
        Reject(request_id=1, status=500, message="out of memory"),
        Reject(request_id=3, status=500, message="out of memory"),
        spawn(2, "b")]
    assert sim.runner(1 + 1).model == "b" and sim.state.runner(1) is None
    assert [q.id for q in sim.state.waiting] == [2, 4]


def test_runner_failed_spares_another_spec_of_the_same_model() -> None:
    sim = Sim()
    sim.queue(1, "a")
    sim.queue(2, "a", spec=SPEC2)
    assert sim(RunnerFailed(runner_id=1, message="boom")) == [
        Reject(request_id=1, status=500, message="boom"), spawn(2, "a", SPEC2)]


def test_after_a_failure_the_next_request_spawns_a_fresh_runner() -> None:
    sim = Sim()
    sim.queue(1)
    sim(RunnerFailed(runner_id=1, message="boom"))
    assert sim.state.runners == ()
    assert sim.queue(2) == [spawn(2)]


def test_loading_runner_exit_fails_waiting_with_default_message() -> None:
    sim = Sim()
    sim.queue(1)
    assert sim(RunnerExited(runner_id=1)) == [
        Reject(request_id=1, status=500, message="llama runner process has terminated")]
    sim.queue(2)
    assert sim(RunnerExited(runner_id=2, message="exit status 2")) == [
        Reject(request_id=2, status=500, message="exit status 2")]


def test_ready_runner_exit_forgets_it_and_next_request_loads_fresh() -> None:
    sim = Sim()
    sim.loaded(1)
    assert sim(RunnerExited(runner_id=1, message="segfault")) == []
    assert sim.state.runners == ()
    assert sim.finish(1) == []  # its in-flight request learnt of it from the pipe
    assert sim.queue(2) == [spawn(2)]


def test_ready_runner_crash_with_waiters_loads_a_fresh_one() -> None:
    sim = Sim()
    sim.loaded(1)
    sim.queue(2)
    assert sim(RunnerExited(runner_id=1)) == [spawn(2)]
    assert sim.ready(2) == [Dispatch(request_id=2, runner_id=2)]


def test_stopping_runner_exit_frees_it() -> None:
    sim = Sim()
    sim.loaded(1, keep_alive=0)
    assert sim.finish(1) == [StopRunner(runner_id=1)]
    assert sim(RunnerExited(runner_id=1)) == []
    assert sim.state.runners == ()


# -- cancellation ------------------------------------------------------------------------------


def test_cancel_a_waiting_request() -> None:
    sim = Sim()
    sim.loaded(1)
    sim.queue(2)
    sim.queue(3)
    assert sim(RequestCancelled(request_id=2)) == []
    assert sim.finish(1) == [Dispatch(request_id=3, runner_id=1)]


def test_cancel_an_in_flight_request_frees_its_slot() -> None:
    sim = Sim()
    sim.loaded(1, keep_alive=5 * S)
    sim.queue(2)
    assert sim(RequestCancelled(request_id=1), at=S) == [Dispatch(request_id=2, runner_id=1)]
    assert sim(RequestCancelled(request_id=2), at=2 * S) == []
    assert sim.deadline == 7 * S


def test_cancel_the_request_a_load_was_for() -> None:
    sim = Sim()
    sim.queue(1, keep_alive=5 * S)
    assert sim(RequestCancelled(request_id=1)) == []
    assert sim.ready(1) == []  # loaded for nobody: idle, counting down
    assert sim.deadline == 5 * S


# -- bad input ---------------------------------------------------------------------------------


def test_duplicate_request_id_raises() -> None:
    sim = Sim()
    sim.queue(1)
    with pytest.raises(SchedulerError):
        sim.queue(1)  # waiting
    sim.ready(1)
    with pytest.raises(SchedulerError):
        sim.queue(1)  # in flight
    assert SchedulerError("x").status_hint == 500


def test_unknown_ids_are_ignored() -> None:
    sim = Sim()
    sim.loaded(1)
    before = sim.state
    for ev in (RunnerReady(runner_id=99), RunnerFailed(runner_id=99, message="x"),
               RunnerExited(runner_id=99), RequestFinished(request_id=99),
               RequestCancelled(request_id=99), RunnerReady(runner_id=1)):
        assert sim(ev) == []
        assert sim.state == before


def test_unknown_event_type_raises() -> None:
    with pytest.raises(SchedulerError):
        step(State(), object(), 0)  # type: ignore[arg-type]


def test_validation() -> None:
    with pytest.raises(SchedulerError):
        Request(id=1, model="a", size=-1)
    with pytest.raises(SchedulerError):
        Request(id=1, model="a", size=1, size_vram=2)
    for bad in ({"num_parallel": 0}, {"max_loaded": 0}, {"max_queue": -1}):
        with pytest.raises(SchedulerError):
            Config(**bad)


def test_reprs_are_valid_python() -> None:
    objs: list[object] = [
        RequestQueued(request=Request(id=1, model="a", spec=SPEC2, kind=Kind.LOAD,
                                      keep_alive=FOREVER, size=3)),
        RequestFinished(request_id=1), RequestCancelled(request_id=1),
        RunnerReady(runner_id=1), RunnerFailed(runner_id=1, message="m"),
        RunnerExited(runner_id=1, message="m"), Tick(),
        spawn(1, "a", SPEC2), StopRunner(runner_id=1), Dispatch(request_id=1, runner_id=2),
        Reject(request_id=1, status=503, message=BUSY_MESSAGE),
        ReplyLoaded(request_id=1, runner_id=2), ReplyUnloaded(request_id=1),
        Config(max_queue=3),
    ]
    for obj in objs:
        assert eval(repr(obj), vars(sc)) == obj


def test_step_does_not_mutate_its_input() -> None:
    sim = Sim()
    sim.loaded(1)
    before = sim.state
    copy = replace(before)
    step(before, RequestQueued(request=Request(id=2, model="b")), 5)
    assert before == copy


# =============================================================================================
# 2. Exhaustive table: every representative state x every kind of event


def _build(config: Config, events: list[tuple[int, Event]]) -> State:
    state = State(config=config)
    for now, ev in events:
        state, _, _ = step(state, ev, now)
    return state


def _q(rid: int, model: str = "a", **kw: object) -> RequestQueued:
    return RequestQueued(request=Request(id=rid, model=model, **kw))  # type: ignore[arg-type]


_CFG = Config(num_parallel=2, max_loaded=2, max_queue=3, memory_budget=20,
              default_keep_alive=10 * S)

STATES: dict[str, tuple[int, State]] = {
    "empty": (0, State(config=_CFG)),
    "loading_with_waiters": (0, _build(_CFG, [(0, _q(1, size=5)), (0, _q(2)), (0, _q(3, "b"))])),
    "ready_idle": (S, _build(_CFG, [(0, _q(1, size=5)), (0, RunnerReady(runner_id=1)),
                                    (S, RequestFinished(request_id=1))])),
    "ready_busy_at_capacity": (0, _build(_CFG, [(0, _q(1, size=5)), (0, _q(2)),
                                                (0, RunnerReady(runner_id=1)), (0, _q(3))])),
    "stopping": (20 * S, _build(_CFG, [(0, _q(1, size=5)), (0, RunnerReady(runner_id=1)),
                                       (S, RequestFinished(request_id=1)),
                                       (20 * S, Tick())])),
    "mixture_full_queue": (S, _build(_CFG, [
        (0, _q(1, "a", size=8)), (0, RunnerReady(runner_id=1)), (0, _q(2, "a")),
        (0, _q(3, "b", size=8, keep_alive=FOREVER)), (0, RunnerReady(runner_id=2)),
        (S, RequestFinished(request_id=3)),
        (S, _q(4, "a")), (S, _q(5, "c", size=8)), (S, _q(6, "a", kind=Kind.LOAD))])),
    "draining": (0, _build(_CFG, [(0, _q(1, size=5)), (0, RunnerReady(runner_id=1)),
                                  (0, _q(2, spec=SPEC2, size=5))])),
    "over_budget_alone": (0, _build(_CFG, [(0, _q(1, size=50)), (0, RunnerReady(runner_id=1)),
                                           (0, _q(2, "b", size=5))])),
}


def _first(xs: list[int]) -> int:
    return xs[0] if xs else 12345


def _in_flight(s: State) -> list[int]:
    return [i for r in s.runners for i in r.in_flight]


def _runner_ids(s: State, *states: RunnerState) -> list[int]:
    return [r.id for r in s.runners if r.state in states]


EventFactory = Callable[[State, int], Event]
NEW = 100

EVENTS: dict[str, EventFactory] = {
    "queue_loaded_model": lambda s, t: _q(NEW, "a", size=5),
    "queue_other_spec": lambda s, t: _q(NEW, "a", spec=SPEC2, size=5),
    "queue_new_model": lambda s, t: _q(NEW, "d", size=7),
    "queue_huge_model": lambda s, t: _q(NEW, "e", size=100),
    "queue_load": lambda s, t: _q(NEW, "a", kind=Kind.LOAD, keep_alive=3 * S),
    "queue_unload": lambda s, t: _q(NEW, "a", kind=Kind.UNLOAD, keep_alive=0),
    "queue_keep_zero": lambda s, t: _q(NEW, "b", keep_alive=0),
    "queue_duplicate": lambda s, t: _q(_first([q.id for q in s.waiting] + _in_flight(s))),
    "finish_in_flight": lambda s, t: RequestFinished(request_id=_first(_in_flight(s))),
    "finish_waiting": lambda s, t: RequestFinished(request_id=_first([q.id for q in s.waiting])),
    "finish_unknown": lambda s, t: RequestFinished(request_id=999),
    "cancel_waiting": lambda s, t: RequestCancelled(
        request_id=_first([q.id for q in s.waiting][::-1])),
    "cancel_in_flight": lambda s, t: RequestCancelled(request_id=_first(_in_flight(s)[::-1])),
    "ready_loading": lambda s, t: RunnerReady(
        runner_id=_first(_runner_ids(s, RunnerState.LOADING))),
    "ready_ready": lambda s, t: RunnerReady(runner_id=_first(_runner_ids(s, RunnerState.READY))),
    "ready_unknown": lambda s, t: RunnerReady(runner_id=77),
    "failed_loading": lambda s, t: RunnerFailed(
        runner_id=_first(_runner_ids(s, RunnerState.LOADING)), message="load failed"),
    "failed_ready": lambda s, t: RunnerFailed(
        runner_id=_first(_runner_ids(s, RunnerState.READY)), message="boom"),
    "exited_loading": lambda s, t: RunnerExited(
        runner_id=_first(_runner_ids(s, RunnerState.LOADING))),
    "exited_ready": lambda s, t: RunnerExited(
        runner_id=_first(_runner_ids(s, RunnerState.READY))),
    "exited_stopping": lambda s, t: RunnerExited(
        runner_id=_first(_runner_ids(s, RunnerState.STOPPING))),
    "exited_unknown": lambda s, t: RunnerExited(runner_id=77),
    "tick_now": lambda s, t: Tick(),
    "tick_deadline": lambda s, t: Tick(),
    "tick_far": lambda s, t: Tick(),
}

_TICK_AT: dict[str, Callable[[State, int], int]] = {
    "tick_deadline": lambda s, t: sc.next_deadline(s) or t,
    "tick_far": lambda s, t: t + 10**15,
}


def test_representative_states_are_what_they_claim() -> None:
    def kinds(name: str) -> list[RunnerState]:
        return [r.state for r in STATES[name][1].runners]
    assert kinds("empty") == []
    assert kinds("loading_with_waiters") == [RunnerState.LOADING]
    assert len(STATES["loading_with_waiters"][1].waiting) == 3
    assert kinds("ready_idle") == [RunnerState.READY]
    busy = STATES["ready_busy_at_capacity"][1]
    assert busy.runners[0].in_flight == (1, 2) and len(busy.waiting) == 1
    assert kinds("stopping") == [RunnerState.STOPPING]
    mix = STATES["mixture_full_queue"][1]
    assert len(mix.waiting) == mix.config.max_queue
    assert len(mix.runners) == 2
    drain = STATES["draining"][1]
    assert drain.runners[0].draining and drain.runners[0].in_flight
    assert len(STATES["over_budget_alone"][1].runners) == 1
    for now, state in STATES.values():
        check_state(state, now)


@pytest.mark.parametrize(("state_name", "event_name"),
                         list(itertools.product(STATES, EVENTS)))
def test_every_state_and_event(state_name: str, event_name: str) -> None:
    now, state = STATES[state_name]
    event = EVENTS[event_name](state, now)
    at = _TICK_AT.get(event_name, lambda s, t: t)(state, now)
    existing = {q.id for q in state.waiting} | set(_in_flight(state))
    if isinstance(event, RequestQueued) and event.request.id in existing:
        with pytest.raises(SchedulerError):
            step(state, event, at)
        return
    new, commands, deadline = step(state, event, at)
    check_state(new, at)
    check_commands(state, new, event, commands)
    assert deadline == sc.next_deadline(new)


def check_commands(old: State, new: State, event: Event, commands: tuple[Command, ...]) -> None:
    """What every command may refer to, judged from the states before and after the step."""
    old_runners = {r.id: r for r in old.runners}
    waiting = {q.id: q for q in old.waiting}
    if isinstance(event, RequestQueued):
        waiting[event.request.id] = event.request
    answered: set[int] = set()
    for c in commands:
        if isinstance(c, SpawnRunner):
            assert c.runner_id >= old.next_runner_id
            r = new.runner(c.runner_id)
            assert r is not None and r.state is RunnerState.LOADING
        elif isinstance(c, StopRunner):
            prev = old_runners.get(c.runner_id)
            ended = {event.request_id} if isinstance(
                event, RequestFinished | RequestCancelled) else set()
            assert prev is None or not set(prev.in_flight) - ended, "a busy runner was stopped"
            r = new.runner(c.runner_id)
            assert r is not None and r.state is RunnerState.STOPPING
        elif isinstance(c, Dispatch | ReplyLoaded | ReplyUnloaded | Reject):
            assert c.request_id in waiting and c.request_id not in answered
            answered.add(c.request_id)
            q = waiting[c.request_id]
            if isinstance(c, Dispatch | ReplyLoaded):
                r = new.runner(c.runner_id)
                assert r is not None and r.state is RunnerState.READY
                assert (r.model, r.spec) == (q.model, q.spec)
            if isinstance(c, Dispatch):
                in_flight = new.runner(c.runner_id).in_flight  # type: ignore[union-attr]
                assert q.kind is Kind.GENERATE and c.request_id in in_flight
            if isinstance(c, Reject) and c.status == 503:
                assert isinstance(event, RequestQueued) and c.request_id == event.request.id
                assert c.message == BUSY_MESSAGE
    for q in new.waiting:
        assert q.id in waiting and q.id not in answered


# -- the runner lifecycle table, every (state, input), as h2's test_state_machines ------------

_LIFE_S = 7 * S  # the runner's keep_alive
_FAILS = Request(id=2, model="a")  # waits for the runner's model and spec: fails with its load
_OTHER = Request(id=3, model="b")
_REPORTS = {sc.RunnerInput.FAILED: RunnerFailed(runner_id=1, message="boom"),
            sc.RunnerInput.EXITED: RunnerExited(runner_id=1, message="boom"),
            sc.RunnerInput.READY: RunnerReady(runner_id=1)}


def _one_runner(runner_state: RunnerState) -> State:
    """Runner 1 in ``runner_state`` (idle, as a stopped one must be) and two requests waiting:
    one for its model and spec, one for another model. Made by hand, so not settled:
    ``transition`` alone decides nothing else."""
    runner = sc.Runner(id=1, model="a", name="a", spec=LoadSpec(), state=runner_state, size=1,
                       size_vram=0, keep_alive=_LIFE_S,
                       draining=runner_state is RunnerState.STOPPING)
    return State(config=Config(max_loaded=1), runners=(runner,), waiting=(_FAILS, _OTHER),
                 next_runner_id=2)


def test_the_lifecycle_table_is_total_but_for_stopping_a_runner_that_is_not_ready() -> None:
    pairs = set(itertools.product(RunnerState, sc.RunnerInput))
    assert pairs - set(sc.LIFECYCLE) == {(RunnerState.LOADING, sc.RunnerInput.STOP),
                                         (RunnerState.STOPPING, sc.RunnerInput.STOP)}


@settings(max_examples=60)
@given(runner_state=st.sampled_from(RunnerState), runner_input=st.sampled_from(sc.RunnerInput))
def test_runner_lifecycle(runner_state: RunnerState, runner_input: sc.RunnerInput) -> None:
    state = _one_runner(runner_state)
    runner = state.runners[0]
    now = 5 * S
    if (runner_state, runner_input) not in sc.LIFECYCLE:
        with pytest.raises(SchedulerError):
            sc.transition(state, runner, runner_input, now, "boom")
        return
    _, target = sc.LIFECYCLE[runner_state, runner_input]
    new, commands = sc.transition(state, runner, runner_input, now, "boom")
    after = new.runner(1)
    assert (after.state if after is not None else None) is target
    # the side effects: only a failed load answers its waiting requests (a load lost with its
    # node does not: they are placed again), only a stop says so
    if target is runner_state:
        assert (new, commands) == (state, ())  # a late or repeated report changes nothing
    elif (target is None and runner_state is RunnerState.LOADING
          and runner_input is not sc.RunnerInput.LOST):
        assert commands == (Reject(request_id=2, status=500, message="boom"),)
        assert new.waiting == (_OTHER,)
    elif target is RunnerState.STOPPING:
        assert commands == (StopRunner(runner_id=1),)
        assert after is not None and after.draining and after.expires_at is None
    else:
        assert commands == () and new.waiting == state.waiting
    if target is RunnerState.READY and runner_state is not RunnerState.READY:
        assert after == replace(runner, state=RunnerState.READY, last_used=now,
                                expires_at=now + _LIFE_S)  # idle: the countdown runs
    # ``step`` feeds the runner's own reports (events) through the same table
    if runner_input in _REPORTS:
        stepped, _, _ = step(state, _REPORTS[runner_input], now)
        again = stepped.runner(1)
        assert (again.state if again is not None else None) is target


# =============================================================================================
# 3. A state machine against a naive model

MODELS = ("a", "b", "c")
SPECS = (LoadSpec(), SPEC2)
SIZES = {"a": 3, "b": 4, "c": 6}


@dataclass
class MRunner:
    id: int
    model: str
    spec: LoadSpec
    size: int
    keep: int
    state: str = "loading"  # loading | ready | stopping
    in_flight: set[int] = field(default_factory=set)
    expires: int | None = None
    unloading: bool = False
    slots: int = 1  # requests in flight at once: what the spawning request asked, or config


class SchedulerMachine(RuleBasedStateMachine):
    """Random traffic through ``step``; a naive model checks every command it returns.

    The model knows only what the adapter would see: requests it queued, commands it got,
    events it fed. It keeps each request's fate and each runner's observable state, and
    computes keep-alive deadlines itself.
    """

    def __init__(self) -> None:
        super().__init__()
        self.state = State()
        self.now = 0
        self.next_id = 1
        self.pending: dict[int, Request] = {}  # queued, not yet answered (insertion = arrival)
        self.running: dict[int, int] = {}  # request id -> runner id
        self.fates: dict[int, str] = {}
        self.runners: dict[int, MRunner] = {}
        self.deadline: int | None = None
        self.steps = 0

    @initialize(num_parallel=st.integers(1, 3), max_loaded=st.integers(1, 3),
                max_queue=st.sampled_from([0, 1, 2, 4, 8, 16]),
                budget=st.sampled_from([0, 0, 8, 10, 14]))
    def configure(self, num_parallel: int, max_loaded: int, max_queue: int,
                  budget: int) -> None:
        self.state = State(config=Config(num_parallel=num_parallel, max_loaded=max_loaded,
                                         max_queue=max_queue, memory_budget=budget,
                                         default_keep_alive=3 * S))

    # -- driving -------------------------------------------------------------------------------
    def feed(self, event: Event) -> None:
        cfg = self.state.config
        old = self.state
        self.state, commands, self.deadline = step(self.state, event, self.now)
        self.steps += 1
        must_fail: set[int] = set()
        # the event, as the model sees it
        if isinstance(event, RequestQueued):
            self.pending[event.request.id] = event.request
        elif isinstance(event, RequestFinished | RequestCancelled):
            rid = event.request_id
            if rid in self.pending:
                del self.pending[rid]
                self.fates[rid] = "cancelled"
            elif rid in self.running:
                r = self.runners[self.running.pop(rid)]
                r.in_flight.discard(rid)
                self.fates[rid] = "finished"
                if not r.in_flight:
                    self.went_idle(r)
        elif isinstance(event, RunnerReady):
            ready = self.runners.get(event.runner_id)
            if ready is not None and ready.state == "loading":
                ready.state = "ready"
                self.went_idle(ready)
        elif isinstance(event, RunnerFailed | RunnerExited):
            gone = self.runners.pop(event.runner_id, None)
            if gone is not None:
                for rid in gone.in_flight:
                    del self.running[rid]
                    self.fates[rid] = "runner gone"
                if gone.state == "loading":
                    must_fail = {q.id for q in self.pending.values() if q.model == gone.model
                                 and q.spec == gone.spec and q.kind is not Kind.UNLOAD}
        # the commands, in order
        spawned_for: set[int] = set()
        for c in commands:
            if isinstance(c, SpawnRunner):
                assert not any(r.state == "loading" for r in self.runners.values())
                assert c.runner_id not in self.runners
                trigger = self.first_pending(c.model)
                assert trigger is not None and trigger.spec == c.spec
                assert trigger.kind is not Kind.UNLOAD
                spawned_for.add(trigger.id)
                keep = cfg.default_keep_alive if trigger.keep_alive is None \
                    else trigger.keep_alive
                assert c.num_parallel == trigger.num_parallel
                self.runners[c.runner_id] = MRunner(
                    id=c.runner_id, model=c.model, spec=c.spec, size=trigger.size, keep=keep,
                    slots=trigger.num_parallel or cfg.num_parallel)
            elif isinstance(c, StopRunner):
                r = self.runners[c.runner_id]
                assert r.state == "ready", f"stopping a {r.state} runner"
                assert not r.in_flight, "a runner with requests in flight was stopped"
                r.state, r.expires = "stopping", None
            elif isinstance(c, Reject):
                assert c.request_id in self.pending
                if c.status == 503:
                    assert isinstance(event, RequestQueued)
                    assert c.request_id == event.request.id and c.message == BUSY_MESSAGE
                    assert c.request_id not in spawned_for
                else:
                    assert c.status == 500 and c.request_id in must_fail
                    must_fail.discard(c.request_id)
                del self.pending[c.request_id]
                self.fates[c.request_id] = f"rejected {c.status}"
            else:
                assert isinstance(c, Dispatch | ReplyLoaded | ReplyUnloaded)
                q = self.pending.get(c.request_id)
                assert q is not None, f"{c!r} for a request that is not waiting"
                assert self.first_pending(q.model) is q, "FIFO per model broken"
                del self.pending[c.request_id]
                if isinstance(c, ReplyUnloaded):
                    assert q.kind is Kind.UNLOAD
                    self.fates[q.id] = "unloaded"
                    for r in self.runners.values():
                        if r.model == q.model and r.state == "ready":
                            r.keep, r.unloading = 0, True
                    continue
                r = self.runners[c.runner_id]
                assert r.state == "ready" and not r.unloading
                assert (r.model, r.spec) == (q.model, q.spec)
                if q.keep_alive is not None:
                    r.keep = q.keep_alive
                if isinstance(c, Dispatch):
                    assert q.kind is Kind.GENERATE
                    assert len(r.in_flight) < r.slots
                    r.in_flight.add(q.id)
                    self.running[q.id] = r.id
                    r.expires = None
                    self.fates[q.id] = "dispatched"
                else:
                    assert q.kind is Kind.LOAD
                    self.fates[q.id] = "loaded"
                    if not r.in_flight:
                        self.went_idle(r)
        assert not must_fail, f"not failed with their runner: {must_fail}"
        self.check(old)

    def went_idle(self, r: MRunner) -> None:
        if r.state == "ready":
            r.expires = None if r.keep < 0 else self.now + r.keep

    def first_pending(self, model: str) -> Request | None:
        return next((q for q in self.pending.values() if q.model == model), None)

    def check(self, old: State) -> None:
        cfg = self.state.config
        check_state(self.state, self.now)
        # the model and the reducer agree on what is waiting and what runs where
        assert [q.id for q in self.state.waiting] == list(self.pending)
        assert {r.id: (r.state.value, set(r.in_flight)) for r in self.state.runners} == {
            r.id: (r.state, r.in_flight) for r in self.runners.values()}
        assert len(self.pending) <= cfg.max_queue
        live = list(self.runners.values())
        assert sum(r.state == "loading" for r in live) <= 1
        assert len(live) <= cfg.max_loaded
        if cfg.memory_budget and len(live) > 1:
            assert sum(r.size for r in live) <= cfg.memory_budget
        idle = [r for r in live if r.state == "ready" and not r.in_flight]
        for r in idle:
            assert r.expires is None or r.expires > self.now, "an expired runner lingers"
        expiries = [r.expires for r in idle if r.expires is not None]
        assert self.deadline == (min(expiries) if expiries else None)

    # -- rules ---------------------------------------------------------------------------------
    @rule(model=st.sampled_from(MODELS), spec=st.sampled_from(SPECS),
          kind=st.sampled_from([Kind.GENERATE] * 4 + [Kind.LOAD, Kind.UNLOAD]),
          keep=st.sampled_from([None, None, 0, 2 * S, 5 * S, FOREVER]),
          parallel=st.sampled_from([0, 0, 1, 2, 4]))
    def arrive(self, model: str, spec: LoadSpec, kind: Kind, keep: int | None,
               parallel: int) -> None:
        if kind is Kind.UNLOAD:
            keep = 0  # what the adapter sends for an empty prompt with keep_alive 0
        elif kind is Kind.LOAD and keep == 0:
            kind = Kind.UNLOAD
        size = SIZES[model] + (2 if spec != LoadSpec() else 0)
        rid, self.next_id = self.next_id, self.next_id + 1
        self.feed(RequestQueued(request=Request(id=rid, model=model, spec=spec, kind=kind,
                                                keep_alive=keep, size=size,
                                                num_parallel=parallel)))

    @rule(data=st.data())
    @precondition(lambda self: bool(self.running))
    def finish(self, data: st.DataObject) -> None:
        self.feed(RequestFinished(request_id=data.draw(st.sampled_from(sorted(self.running)))))

    @rule(data=st.data())
    @precondition(lambda self: bool(self.pending or self.running))
    def cancel(self, data: st.DataObject) -> None:
        ids = sorted(self.pending) + sorted(self.running)
        self.feed(RequestCancelled(request_id=data.draw(st.sampled_from(ids))))

    @rule(outcome=st.sampled_from(["ready"] * 6 + ["failed", "exited"]))
    @precondition(lambda self: any(r.state == "loading" for r in self.runners.values()))
    def runner_loads(self, outcome: str) -> None:
        rid = next(r.id for r in self.runners.values() if r.state == "loading")
        if outcome == "ready":
            self.feed(RunnerReady(runner_id=rid))
        elif outcome == "failed":
            self.feed(RunnerFailed(runner_id=rid, message="unable to load model"))
        else:
            self.feed(RunnerExited(runner_id=rid))

    @rule(data=st.data())
    @precondition(lambda self: any(r.state != "loading" for r in self.runners.values()))
    def runner_exits(self, data: st.DataObject) -> None:
        # mostly a stopping runner exiting as told; sometimes a ready one crashing
        stopping = sorted(r.id for r in self.runners.values() if r.state == "stopping")
        ready = sorted(r.id for r in self.runners.values() if r.state == "ready")
        rid = data.draw(st.sampled_from(stopping * 4 + ready))
        if rid in ready and data.draw(st.booleans()):
            self.feed(RunnerFailed(runner_id=rid, message="boom"))
        else:
            self.feed(RunnerExited(runner_id=rid, message="exit status 0"))

    @rule(which=st.integers(0, 3), runner_id=st.integers(1000, 1002),
          request_id=st.integers(5000, 5002))
    def unknown_ids(self, which: int, runner_id: int, request_id: int) -> None:
        self.feed([RunnerReady(runner_id=runner_id), RunnerExited(runner_id=runner_id),
                   RunnerFailed(runner_id=runner_id, message="x"),
                   RequestFinished(request_id=request_id)][which])

    @rule(dt=st.sampled_from([0, 1, S // 2, S, 3 * S, 10 * S]))
    def time_passes(self, dt: int) -> None:
        self.now += dt
        self.feed(Tick())

    @rule()
    @precondition(lambda self: self.deadline is not None)
    def tick_at_deadline(self) -> None:
        target = self.deadline
        assert target is not None
        if target > self.now + 1:
            self.now = target - 1
            self.feed(Tick())  # one ns early: nothing may expire yet
            assert self.deadline == target
        self.now = max(self.now, target)
        self.feed(Tick())

    @invariant()
    def fates_are_consistent(self) -> None:
        for rid in self.pending:
            assert rid not in self.fates
        for rid in self.running:
            assert self.fates[rid] == "dispatched"

    def teardown(self) -> None:
        """Liveness: with runners that load and requests that finish, nothing stays queued."""
        if not self.steps:
            return
        for _ in range(500):
            if not self.pending and not self.running:
                break
            loading = [r.id for r in self.runners.values() if r.state == "loading"]
            stopping = [r.id for r in self.runners.values() if r.state == "stopping"]
            if loading:
                self.feed(RunnerReady(runner_id=loading[0]))
            elif self.running:
                self.feed(RequestFinished(request_id=min(self.running)))
            elif stopping:
                self.feed(RunnerExited(runner_id=stopping[0]))
            else:
                self.now = self.deadline if self.deadline is not None else self.now + 3600 * S
                self.feed(Tick())
        assert not self.pending, f"requests lost in the queue: {list(self.pending)}"
        assert not self.running
        assert set(self.fates) == set(range(1, self.next_id))


TestSchedulerMachine = SchedulerMachine.TestCase
TestSchedulerMachine.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


# =============================================================================================
# 4. Settling only what an event changed is settling everything
#
# Every state ``step`` returns is settled, so ``step`` re-decides only the models an event may
# have unblocked (``apply_event``'s answer). Over long random mixes and configs that must give
# exactly what re-deciding every model gives, command for command and deadline for deadline.

CONFIGS = [
    BENCH_CONFIG,
    replace(BENCH_CONFIG, num_parallel=1, max_loaded=1, memory_budget=0),
    replace(BENCH_CONFIG, num_parallel=4, max_loaded=3, max_queue=8),
    replace(BENCH_CONFIG, memory_budget=12, max_queue=3),
]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("config", CONFIGS, ids=["bench", "one-slot", "wide", "tight"])
def test_settling_what_changed_equals_settling_everything(seed: int, config: Config) -> None:
    state = State(config=config)
    for now, event in realistic_mix(3000, seed=seed):
        try:
            new, commands, deadline = step(state, event, now)
        except SchedulerError:  # an id the mix reuses under this config
            with pytest.raises(SchedulerError):
                sc.apply_event(state, event, now)
            continue
        applied, own, _ = sc.apply_event(state, event, now)
        full, settled = sc.settle(applied, now, isinstance(event, RequestQueued), models=None)
        assert (commands, deadline) == (own + settled, sc.next_deadline(full)), (now, event)
        assert new == full
        state = new
