"""A real multi-node Ray cluster on this machine, every listener on a loopback address.

Each node is a ``ray start --block`` process in a session of its own, with its own environment
(``POLLAMA_MODELS``: its own model store) and its own loopback address: the head on 127.0.0.2,
the others on 127.0.0.3 and up (Ray rewrites 127.0.0.1 to the machine's outward address, and
not the others). The head's health checks are tightened so a killed node is noticed within
seconds. Nodes are stopped by their process ids, never by ``ray stop`` (which stops every Ray
process on the machine).

    with RayCluster(tmp, [{"name": "head", "memory": 2 << 30}, {"name": "n1"}]) as cluster:
        ... cluster.address, cluster.env, cluster.nodes["n1"].node_id, cluster.kill("n1")
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

RAY = os.path.join(os.path.dirname(sys.executable), "ray")

# For every process of the cluster and its drivers.
BASE_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    # the GCS marks a node dead after about 3 missed 1-second checks
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "1000",
}


@dataclass
class RayNode:
    name: str
    node_id: str
    ip: str
    models_dir: str
    proc: subprocess.Popen[bytes]
    log_path: str
    pids: list[int] = field(default_factory=list)


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, parent in parents.items() if parent == p]
    return out


def _kill_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class RayCluster:
    def __init__(self, tmp: str, nodes: list[dict[str, Any]]) -> None:
        self.tmp = tmp
        os.makedirs(tmp, exist_ok=True)
        # Unix socket paths must stay short: a temp dir right under /tmp.
        self.ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        self.env = {**BASE_ENV, "RAY_TMPDIR": self.ray_tmp}
        self.nodes: dict[str, RayNode] = {}
        self.address = ""
        self._specs = nodes
        self._next_ip = 2

    def __enter__(self) -> RayCluster:
        try:
            for spec in self._specs:
                self.add(spec)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, spec: dict[str, Any]) -> RayNode:
        name = spec["name"]
        ip = f"127.0.0.{self._next_ip}"
        self._next_ip += 1
        models = os.path.join(self.tmp, f"models-{name}")
        os.makedirs(models, exist_ok=True)
        argv = [RAY, "start", "--block", f"--node-ip-address={ip}",
                f"--num-cpus={spec.get('num_cpus', 2)}",
                f"--object-store-memory={spec.get('object_store_memory', 80 * 10**6)}",
                "--disable-usage-stats"]
        if spec.get("memory"):
            argv.append(f"--memory={spec['memory']}")
        if not self.address:
            port = _free_port(ip)
            self.address = f"{ip}:{port}"
            argv += ["--head", f"--port={port}", "--include-dashboard=false"]
        else:
            argv += [f"--address={self.address}"]
        log_path = os.path.join(self.tmp, f"ray-{name}.log")
        env = {**os.environ, **self.env, "POLLAMA_MODELS": models}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log,
                                    start_new_session=True)
        node = RayNode(name=name, node_id="", ip=ip, models_dir=models, proc=proc,
                       log_path=log_path)
        self.nodes[name] = node
        node.node_id = self._wait_for(node)
        node.pids = descendants(proc.pid)
        return node

    def _wait_for(self, node: RayNode, deadline: float = 120.0) -> str:
        """The node's Ray id, once the cluster lists it alive."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if node.proc.poll() is not None:
                raise RuntimeError(f"ray node {node.name} exited:\n{self._log(node)}")
            if b"Ray runtime started" in open(node.log_path, "rb").read():
                for n in self.list_nodes():
                    if n["NodeManagerAddress"] == node.ip and n["Alive"]:
                        return str(n["NodeID"])
            time.sleep(0.5)
        raise RuntimeError(f"ray node {node.name} did not join:\n{self._log(node)}")

    def _log(self, node: RayNode) -> str:
        with open(node.log_path, errors="replace") as f:
            return f.read()[-3000:]

    def list_nodes(self) -> list[dict[str, Any]]:
        """``ray.nodes()`` from a short-lived driver (Ray stays out of the test process)."""
        code = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
                "print(json.dumps([{k: n[k] for k in ('NodeID', 'NodeManagerAddress', 'Alive')}"
                " for n in ray.nodes()]))" % self.address)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, **self.env}, timeout=120)
        if out.returncode != 0:
            return []
        return list(json.loads(out.stdout.strip().splitlines()[-1]))

    def kill(self, name: str) -> None:
        """SIGKILL every process of the node at once, as if its machine died."""
        node = self.nodes[name]
        pids = sorted(set(node.pids + descendants(node.proc.pid)))
        _kill_all(pids, signal.SIGKILL)
        node.proc.wait()

    def stop(self) -> None:
        """Stop this cluster's processes (workers first, the head last), by pid."""
        for node in reversed(list(self.nodes.values())):
            pids = sorted(set(node.pids + descendants(node.proc.pid)))
            _kill_all(pids, signal.SIGTERM)
            try:
                node.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            _kill_all(pids + descendants(node.proc.pid), signal.SIGKILL)
            try:
                node.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
