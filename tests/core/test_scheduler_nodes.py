"""core/scheduler.py on a cluster: nodes joining and lost, placement, per-node budgets, replicas.

The single-machine rules are tested in test_scheduler.py; here every rule is per node, and a
random walk checks the cluster's invariants after each step.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pollama.core import scheduler as sc
from pollama.core.scheduler import (Command, Config, Dispatch, NodeJoined, NodeLost, Request,
                                    RequestFinished, RequestQueued, RunnerExited, RunnerReady,
                                    RunnerState, SchedulerError, SpawnRunner, State, StopRunner,
                                    step)

S = 1_000_000_000
GB = 1 << 30


class Cluster:
    """Feeds events through the reducer on a cluster config and checks every state."""

    def __init__(self, **config: int) -> None:
        self.state = State(config=Config(cluster=True, **config))  # type: ignore[arg-type]
        self.now = 0

    def __call__(self, event: sc.Event, at: int | None = None) -> list[Command]:
        if at is not None:
            self.now = at
        self.state, commands, _ = step(self.state, event, self.now)
        check_cluster(self.state, self.now)
        return list(commands)

    def join(self, node: str, memory: int = 0, models: tuple[str, ...] = ()) -> list[Command]:
        return self(NodeJoined(node_id=node, memory=memory, models=models))

    def queue(self, request_id: int, model: str = "a", **kw: object) -> list[Command]:
        request = Request(id=request_id, model=model, **kw)  # type: ignore[arg-type]
        return self(RequestQueued(request=request))

    def ready(self, runner_id: int) -> list[Command]:
        return self(RunnerReady(runner_id=runner_id))

    def finish(self, request_id: int, at: int | None = None) -> list[Command]:
        return self(RequestFinished(request_id=request_id), at)

    def spawned(self, commands: list[Command]) -> SpawnRunner:
        spawns = [c for c in commands if isinstance(c, SpawnRunner)]
        assert len(spawns) == 1, commands
        return spawns[0]

    def where(self) -> dict[int, str]:
        return {r.id: r.node for r in self.state.runners}


def check_cluster(state: State, now: int) -> None:
    """Per node: at most one load, max_loaded and the budget (unless alone); replicas of a
    model and spec on distinct nodes; every runner on a known node."""
    known = {n.id for n in state.nodes}
    for r in state.runners:
        assert r.node in known, f"runner {r.id} on a lost node {r.node}"
        assert len(r.in_flight) <= sc.slots(r, state.config)
    for node in state.nodes:
        mine = [r for r in state.runners if r.node == node.id]
        assert sum(r.state is RunnerState.LOADING for r in mine) <= 1
        assert len(mine) <= state.config.max_loaded
        if node.memory and len(mine) > 1:
            assert sum(r.size for r in mine) <= node.memory
    live = [(r.model, r.spec, r.node) for r in state.runners
            if r.state is not RunnerState.STOPPING and not r.draining]
    assert len(live) == len(set(live)), "two live replicas on one node"


def test_requests_wait_for_a_node_then_load_on_it() -> None:
    c = Cluster()
    assert c.queue(1) == []
    assert c.join("n1") == [SpawnRunner(runner_id=1, model="a", spec=sc.LoadSpec(), node="n1")]
    assert c.ready(1) == [Dispatch(request_id=1, runner_id=1)]


def test_a_node_joining_a_single_machine_is_a_bug() -> None:
    with pytest.raises(SchedulerError, match="not a cluster"):
        step(State(), NodeJoined(node_id="n1"), 0)


def test_two_models_go_to_two_nodes_when_one_node_holds_only_one() -> None:
    c = Cluster()
    c.join("n1", memory=3 * GB)
    c.join("n2", memory=3 * GB)
    first = c.spawned(c.queue(1, "a", size=2 * GB))
    c.ready(first.runner_id)
    second = c.spawned(c.queue(2, "b", size=2 * GB))
    assert {first.node, second.node} == {"n1", "n2"}
    assert not [cmd for cmd in c.state.runners if cmd.state is RunnerState.STOPPING]


def test_loads_on_two_nodes_run_at_once() -> None:
    c = Cluster()
    c.join("n1")
    c.join("n2")
    a = c.spawned(c.queue(1, "a"))
    b = c.spawned(c.queue(2, "b"))  # n1 is loading: single flight is per node
    assert (a.node, b.node) == ("n1", "n2")


def test_a_request_for_a_loaded_model_goes_to_its_node() -> None:
    c = Cluster()
    c.join("n1")
    c.join("n2")
    c.spawned(c.queue(1, "a"))
    c.ready(1)
    c.finish(1, at=S)
    b = c.spawned(c.queue(2, "b"))
    c.ready(b.runner_id)
    assert c.queue(3, "b") == []  # n-th request of b: its runner is busy with request 2
    c.finish(2)
    assert c.queue(4, "a") == [Dispatch(request_id=4, runner_id=1)]
    assert c.where()[1] == "n1"


def test_a_node_with_the_blobs_is_preferred() -> None:
    c = Cluster()
    c.join("n1", memory=8 * GB)
    c.join("n2", memory=4 * GB, models=("a",))  # less room, but it has a's files
    assert c.spawned(c.queue(1, "a", size=GB)).node == "n2"
    assert c.spawned(c.queue(2, "b", size=GB)).node == "n1"  # then the most free memory


def test_a_node_remembers_the_models_it_loaded() -> None:
    c = Cluster()
    c.join("n1", memory=8 * GB)
    c.join("n2", memory=4 * GB)
    c.spawned(c.queue(1, "a", size=GB, keep_alive=0))  # n1: most free memory
    c.ready(1)
    c.finish(1)  # keep_alive 0: stopped once idle
    c(RunnerExited(runner_id=1))
    assert "a" in {n.id: n for n in c.state.nodes}["n1"].blobs
    c.spawned(c.queue(2, "b", size=GB))
    c.ready(2)  # b on n1 too (most free), so n1 has less room than n2 now
    c.finish(2)
    assert c.spawned(c.queue(3, "a", size=GB)).node == "n1"  # its blobs are there


def test_eviction_is_per_node_lru() -> None:
    c = Cluster(max_loaded=1)
    c.join("n1", models=("a",))
    c.join("n2", models=("b",))
    for request_id, model in ((1, "a"), (2, "b")):
        spawn = c.spawned(c.queue(request_id, model))
        c.ready(spawn.runner_id)
        c.finish(request_id, at=request_id * S)
    # c: both nodes are full; the least recently used idle runner (a's, on n1) goes
    assert c.queue(3, "c") == [StopRunner(runner_id=1)]
    assert c(RunnerExited(runner_id=1)) == [
        SpawnRunner(runner_id=3, model="c", spec=sc.LoadSpec(), node="n1")]


def test_a_busy_model_gets_a_replica_on_another_node_and_load_is_shared() -> None:
    c = Cluster(num_replicas=2)
    c.join("n1")
    c.join("n2")
    c.spawned(c.queue(1, "a"))
    c.ready(1)
    replica = c.spawned(c.queue(2, "a"))  # runner 1 is busy: one more, elsewhere
    assert replica.node == "n2"
    assert c.ready(replica.runner_id) == [Dispatch(request_id=2, runner_id=replica.runner_id)]
    c.finish(1)
    c.finish(2)
    assert c.queue(3, "a") == [Dispatch(request_id=3, runner_id=1)]  # both idle: lower id
    assert c.queue(4, "a") == [Dispatch(request_id=4, runner_id=replica.runner_id)]
    assert c.queue(5, "a") == []  # both busy, and two replicas are all it wants


def test_the_request_hint_asks_for_replicas() -> None:
    c = Cluster()
    c.join("n1")
    c.join("n2")
    c.spawned(c.queue(1, "a"))
    c.ready(1)
    assert c.queue(2, "a") == []  # one replica by default
    c.finish(1)
    c.finish(2)
    c.queue(3, "a")
    assert c.spawned(c.queue(4, "a", replicas=2)).node == "n2"


def test_an_extra_replica_never_evicts() -> None:
    c = Cluster(num_replicas=2, max_loaded=1)
    c.join("n1")
    c.join("n2")
    c.spawned(c.queue(1, "a"))
    c.ready(1)
    c.spawned(c.queue(2, "b"))
    c.ready(2)
    c.finish(2)  # b idle on n2
    assert c.queue(3, "a") == []  # a is busy, but n2 is full: wait for a's slot


def test_a_lost_node_takes_its_runners_and_the_next_request_loads_elsewhere() -> None:
    c = Cluster()
    c.join("n1")
    c.join("n2")
    c.spawned(c.queue(1, "a"))
    c.ready(1)
    assert c(NodeLost(node_id="n1")) == []  # request 1 hears it from its stream
    assert c.state.runners == () and [n.id for n in c.state.nodes] == ["n2"]
    c.finish(1)  # unknown by now: fine
    assert c.spawned(c.queue(2, "a")).node == "n2"


def test_a_load_lost_with_its_node_is_placed_again() -> None:
    c = Cluster()
    c.join("n1")
    c.join("n2")
    c.spawned(c.queue(1, "a"))
    c.spawned(c.queue(2, "b"))
    assert c(NodeLost(node_id="n1")) == []  # no failure; n2 is loading b, so a waits
    assert c.where() == {2: "n2"}
    assert c.ready(2) == [SpawnRunner(runner_id=3, model="a", spec=sc.LoadSpec(), node="n2"),
                          Dispatch(request_id=2, runner_id=2)]  # in queue order


def test_losing_every_node_leaves_requests_waiting() -> None:
    c = Cluster()
    c.join("n1")
    c.spawned(c.queue(1, "a"))
    assert c(NodeLost(node_id="n1")) == []
    assert [q.id for q in c.state.waiting] == [1]
    assert c.spawned(c.join("n2")).node == "n2"


def test_a_node_joining_again_keeps_what_it_had() -> None:
    c = Cluster()
    c.join("n1", memory=GB, models=("a",))
    c.join("n1", memory=2 * GB, models=("b",))
    (node,) = c.state.nodes
    assert (node.memory, node.blobs) == (2 * GB, frozenset({"a", "b"}))


_EVENTS = st.one_of(
    st.tuples(st.just("join"), st.sampled_from(["n1", "n2", "n3"]),
              st.sampled_from([0, 2 * GB, 3 * GB])),
    st.tuples(st.just("lost"), st.sampled_from(["n1", "n2", "n3"]), st.just(0)),
    st.tuples(st.just("queue"), st.sampled_from(["a", "b", "c"]), st.integers(1, 3)),
    st.tuples(st.just("ready"), st.integers(1, 12), st.just(0)),
    st.tuples(st.just("exit"), st.integers(1, 12), st.just(0)),
    st.tuples(st.just("finish"), st.integers(1, 30), st.just(0)),
)


@settings(max_examples=300)
@given(events=st.lists(_EVENTS, max_size=40), num_replicas=st.integers(1, 3))
def test_random_cluster_walks_keep_the_invariants(
        events: list[tuple[str, object, int]], num_replicas: int) -> None:
    c = Cluster(num_replicas=num_replicas, max_loaded=2)
    next_id = 1
    for kind, what, n in events:
        c.now += S
        if kind == "join":
            c.join(str(what), memory=n)
        elif kind == "lost":
            c(NodeLost(node_id=str(what)))
        elif kind == "queue":
            c.queue(next_id, str(what), size=n * GB, keep_alive=30 * S)
            next_id += 1
        elif kind == "ready":
            c.ready(int(what))  # type: ignore[call-overload]
        elif kind == "exit":
            c(RunnerExited(runner_id=int(what)))  # type: ignore[call-overload]
        else:
            c.finish(int(what))  # type: ignore[call-overload]


def test_room_is_made_on_a_busy_node_before_overfilling_an_empty_one() -> None:
    c = Cluster()
    c.join("n1", memory=GB)  # empty, but too small for a
    c.join("n2", memory=3 * GB)
    c.spawned(c.queue(1, "b", size=2 * GB))
    assert c.where() == {1: "n2"}
    c.ready(1)
    c.finish(1)
    assert c.queue(2, "a", size=2 * GB) == [StopRunner(runner_id=1)]  # b is idle: evict it
    assert c.spawned(c(RunnerExited(runner_id=1))).node == "n2"


def test_an_empty_node_takes_a_load_too_big_for_every_node() -> None:
    c = Cluster()
    c.join("n1", memory=GB)
    c.join("n2", memory=GB)
    c.spawned(c.queue(1, "b", size=GB // 2))
    c.ready(1)  # busy: nothing to evict on its node
    assert c.spawned(c.queue(2, "a", size=4 * GB)).node != c.where()[1]
