"""The multi-node Ray cluster fixture (tests/raycluster.py) itself: nodes on loopback with their
own environment, actors pinned to a node see that node's POLLAMA_MODELS, a killed node is
noticed by a driver, and stop() leaves no process behind.

The driver is a subprocess (as ``pollama serve`` will be), so ``ray`` is never imported here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.raycluster import RayCluster, session_pids

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                       reason="ray is not installed (pip install ray) in this interpreter"),
]

# Memory budgets the scheduler will read back from ray.nodes() Resources["memory"].
HEAD_MEMORY = 1 << 30
N1_MEMORY = 3 << 29

# A driver that joins the cluster, pins one actor per node, reports what each actor sees, then
# waits for "killed <name> <ip>" on stdin and reports when ray.nodes() shows that node dead.
DRIVER = r"""
import json, os, sys, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

def say(**kw):
    print(json.dumps(kw), flush=True)

ray.init(address=os.environ["TEST_RAY_ADDRESS"], logging_level="WARNING")

@ray.remote(num_cpus=0)
class Probe:
    def info(self):
        return {"models": os.environ.get("POLLAMA_MODELS"),
                "node_id": ray.get_runtime_context().get_node_id(),
                "ip": ray.util.get_node_ip_address(), "pid": os.getpid()}

nodes = {n["NodeManagerAddress"]: n for n in ray.nodes() if n["Alive"]}
actors = {}
for ip, n in nodes.items():
    actors[ip] = Probe.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
        max_restarts=0).remote()
infos = {ip: ray.get(a.info.remote(), timeout=120) for ip, a in actors.items()}
say(event="placed", driver_ip=ray.util.get_node_ip_address(),
    nodes={ip: {"node_id": n["NodeID"], "memory": n["Resources"].get("memory"),
                "cpu": n["Resources"].get("CPU")} for ip, n in nodes.items()},
    actors=infos)

line = sys.stdin.readline().split()
assert line[0] == "killed", line
dead_ip = line[1]
while True:
    state = {n["NodeManagerAddress"]: n["Alive"] for n in ray.nodes()
             if n["NodeManagerAddress"] == dead_ip}
    if state and not any(state.values()):
        break
    time.sleep(0.05)
seen = time.monotonic()
try:
    ray.get(actors[dead_ip].info.remote(), timeout=60)
    actor = "alive"
except ray.exceptions.RayActorError as e:
    actor = type(e).__name__
alive = [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]]
say(event="dead", seen=seen, actor=actor, alive=alive)
ray.shutdown()
"""


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[RayCluster]:
    t0 = time.monotonic()
    with RayCluster(str(tmp_path), [{"name": "head", "num_cpus": 1, "memory": HEAD_MEMORY}]) as c:
        t1 = time.monotonic()
        c.add({"name": "n1", "num_cpus": 1, "memory": N1_MEMORY})
        t2 = time.monotonic()
        print(f"raycluster: head {t1 - t0:.1f}s, n1 {t2 - t1:.1f}s, "
              f"idle RSS {c.rss_bytes() / 2**20:.0f} MiB")
        yield c


def _read_event(proc: subprocess.Popen[str], deadline: float = 180) -> dict[str, Any]:
    """The driver's next JSON line (its stderr goes to a file; we fail with it on exit)."""
    assert proc.stdout is not None
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"driver exited ({proc.wait()}) without reporting")
        if line.startswith("{"):
            event: dict[str, Any] = json.loads(line)
            return event
    raise AssertionError("driver did not report in time")


def test_actors_see_their_nodes_env_and_a_killed_node_is_noticed(cluster: RayCluster,
                                                                  tmp_path: Any) -> None:
    head, n1 = cluster.nodes["head"], cluster.nodes["n1"]
    # Every node on its own loopback address; each has its own model store.
    assert head.ip.startswith("127.") and n1.ip.startswith("127.") and head.ip != n1.ip
    assert cluster.address.startswith(head.ip + ":")
    assert head.models_dir != n1.models_dir
    assert head.pids and n1.pids and not set(head.pids) & set(n1.pids)
    assert all(k.startswith("RAY_") for k in cluster.env)

    env = dict(os.environ)
    env.update(cluster.env)
    env["TEST_RAY_ADDRESS"] = cluster.address
    env.pop("POLLAMA_MODELS", None)
    stderr_path = os.path.join(str(tmp_path), "driver.err")
    with open(stderr_path, "w") as stderr:
        driver = subprocess.Popen([sys.executable, "-c", DRIVER], env=env, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
    try:
        try:
            placed = _read_event(driver)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{open(stderr_path).read()[-5000:]}") from None
        assert placed["event"] == "placed"
        # The driver attached to the head on loopback (not the machine's outward address).
        assert placed["driver_ip"] == head.ip
        assert set(placed["nodes"]) == {head.ip, n1.ip}
        assert placed["nodes"][head.ip]["node_id"] == head.node_id
        assert placed["nodes"][n1.ip]["node_id"] == n1.node_id
        assert placed["nodes"][head.ip]["memory"] == HEAD_MEMORY
        assert placed["nodes"][n1.ip]["memory"] == N1_MEMORY
        for node in (head, n1):
            info = placed["actors"][node.ip]
            # Worker processes inherit the raylet's environment: the node's own store.
            assert info["models"] == node.models_dir
            assert info["node_id"] == node.node_id
            assert info["ip"] == node.ip
            assert info["pid"] in cluster.node_pids(node.name)

        killed_at = time.monotonic()
        cluster.kill("n1")
        assert n1.pids == [] and session_pids(n1.sid) == []
        assert session_pids(head.sid)  # the rest of the cluster is untouched
        assert driver.stdin is not None
        driver.stdin.write(f"killed {n1.ip}\n")
        driver.stdin.flush()
        dead = _read_event(driver)
        assert dead["event"] == "dead"
        assert dead["actor"] in ("ActorDiedError", "RayActorError", "ActorUnavailableError")
        assert dead["alive"] == [head.ip]
        print(f"raycluster: node death seen by the driver {dead['seen'] - killed_at:.1f}s "
              f"after SIGKILL")
        assert driver.wait(timeout=60) == 0
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()

    sids = [n.sid for n in cluster.nodes.values()]
    ray_tmp = cluster.ray_tmp
    cluster.stop()
    assert [pid for sid in sids for pid in session_pids(sid, zombies=True)] == []
    assert cluster.pids() == []
    assert not os.path.exists(ray_tmp)


def test_add_after_kill_and_stop_is_idempotent(tmp_path: Any) -> None:
    with RayCluster(str(tmp_path), [{"name": "head", "num_cpus": 1, "memory": HEAD_MEMORY},
                                    {"name": "n1", "num_cpus": 1, "memory": N1_MEMORY}]) as c:
        c.kill("n1")
        c.wait_dead("n1")
        n2 = c.add({"name": "n2", "num_cpus": 1, "memory": N1_MEMORY,
                    "resources": {"gpu_slot": 2}})
        table = {n["ip"]: n for n in c.gcs_nodes()}
        assert table[n2.ip]["alive"] and not table[c.nodes["n1"].ip]["alive"]
        assert table[n2.ip]["resources"]["gpu_slot"] == 2
        assert n2.ip not in (c.nodes["head"].ip, c.nodes["n1"].ip)
        c.stop()
        assert c.pids() == []
    assert c.pids() == []  # __exit__ after stop() is harmless
