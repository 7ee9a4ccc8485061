"""A real multi-node Ray cluster on one machine, every node on its own loopback address.

Each node is a separate ``ray start --block`` process started in a new session, with its own
environment (``POLLAMA_MODELS=<its own model store>``), its own Ray temp dir and its own
127.0.0.N address (Ray rewrites 127.0.0.1/localhost to the machine's outward address, but not
other loopback addresses). ``kill(name)`` SIGKILLs every process of that node's session, which
is what a machine dying looks like to the rest of the cluster; the head's GCS health checks are
tuned so that is noticed within a few seconds.

``ray`` is never imported into the calling (pytest) process: GCS queries run in short-lived
subprocesses of the same interpreter. ``stop()`` signals only this cluster's processes, by pid
(never ``ray stop``, which kills every Ray process on the machine).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

DEADLINE = 60.0  # generous: the machine is small and busy

# Ray CLI next to the interpreter running the tests (the venv's ``ray``).
RAY = os.path.join(os.path.dirname(sys.executable), "ray")

# Settings every Ray process of the cluster (and a driver joining it) gets.
# (Not RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: on Linux that makes ``ray start --address`` refuse
# to join with "Multi-node Ray clusters are not supported on Windows and OSX".)
BASE_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}

# GCS-side failure detection (read by the head's gcs_server): a raylet that misses
# ``threshold`` health checks ``period`` apart (each ``timeout`` long) is marked DEAD.
# Ray's defaults take ~30 s. Not much tighter than this: on a busy machine a live raylet that
# misses the checks is declared dead and then kills itself.
HEALTH_ENV = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}

# Run inside a subprocess: poll the GCS node table (no ray.init, no driver registered).
_NODES_SCRIPT = r"""
import json, sys, time
from ray._raylet import GcsClient
address, want_ip, want_state, deadline = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
end = time.monotonic() + deadline
client = None
while True:
    try:
        if client is None:
            client = GcsClient(address=address)
        infos = client.get_all_node_info(timeout=10)
        nodes = []
        for info in infos.values():
            nodes.append({
                "node_id": info.node_id.hex(),
                "ip": info.node_manager_address,
                "alive": info.state == 0,
                "is_head": info.is_head_node,
                "resources": dict(info.resources_total),
            })
        match = [n for n in nodes if n["ip"] == want_ip
                 and n["alive"] == (want_state == "alive")]
        if not want_ip or match:
            print(json.dumps(nodes)); sys.exit(0)
    except Exception as e:  # GCS not up yet
        err = repr(e)
    if time.monotonic() > end:
        print(json.dumps({"timeout": True}), flush=True); sys.exit(3)
    time.sleep(0.1)
"""


@dataclass
class RayNode:
    name: str            # "head", "n1", ...
    node_id: str         # Ray's hex NodeID
    ip: str
    models_dir: str      # this node's own model store (POLLAMA_MODELS in its environment)
    pids: list[int]      # the node's process ids (its session), as of the last refresh
    proc: subprocess.Popen[bytes] = field(repr=False)
    log_path: str = ""
    temp_dir: str = ""

    @property
    def sid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, session, ...)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def session_pids(sid: int, *, zombies: bool = False) -> list[int]:
    """Every process whose session id is ``sid`` (Ray's workers get their own process groups,
    so the session, not the group, is what holds a node together)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields and int(fields[3]) == sid and (zombies or fields[0] != "Z"):
                out.append(int(entry))
    return sorted(out)


def _bound_ipv4() -> set[str]:
    """IPv4 addresses some TCP/UDP socket on this machine is bound to (from /proc/net)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/udp"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    hexip = line.split()[1].split(":")[0]
                    out.add(".".join(str(b) for b in bytes.fromhex(hexip)[::-1]))
        except OSError:
            pass
    return out


def _free_loopback_net() -> str:
    """A 127.A.B prefix no socket uses yet, so that this cluster's nodes (127.A.B.1, .2, ...)
    share no address with another Ray cluster on the machine (other tests, other users'
    ``ray start --node-ip-address=127.0.0.2``): Ray still has a few fixed default ports."""
    used = {ip.rsplit(".", 1)[0] for ip in _bound_ipv4()}
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    while True:
        net = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}"
        if net not in used:
            return net


class RayCluster:
    """``with RayCluster(tmp, [{"name": "head", "num_cpus": 2, "memory": 2 << 30}, {"name": "n1",
    ...}]) as cluster:``. A node spec takes ``name``, ``num_cpus`` (default 1), ``memory`` (bytes,
    the node's memory budget: ray.nodes() Resources["memory"]), optional ``object_store_memory``
    (default 80 MB), ``resources`` (custom resources dict) and ``env`` (extra environment).
    The first spec is the head."""

    def __init__(self, tmp: str, nodes: list[dict[str, Any]]) -> None:
        if not nodes:
            raise ValueError("a cluster needs at least a head node")
        self.tmp = tmp
        # Short: Ray puts unix sockets under it (paths must stay < 108 bytes).
        self.ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        self.nodes: dict[str, RayNode] = {}
        self.address = ""
        self.env: dict[str, str] = {}
        self._net = _free_loopback_net()
        self._next_ip = 1
        self._all: list[RayNode] = []   # every node ever started, killed ones too
        try:
            self._start(nodes[0], head=True)
            self.env = dict(BASE_ENV, RAY_TMPDIR=self.ray_tmp)
            for spec in nodes[1:]:
                self.add(spec)
        except BaseException:
            self.stop()
            raise

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> RayCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- nodes -----------------------------------------------------------------------------
    def add(self, spec: dict[str, Any]) -> RayNode:
        """Start one more (worker) node and wait until the GCS lists it alive."""
        if not self.address:
            raise RuntimeError("no head")
        return self._start(spec, head=False)

    def _start(self, spec: dict[str, Any], *, head: bool) -> RayNode:
        name = spec["name"]
        if name in self.nodes:
            raise ValueError(f"node {name!r} already exists")
        ip = f"{self._net}.{self._next_ip}"
        self._next_ip += 1
        node_tmp = os.path.join(self.ray_tmp, name)
        os.makedirs(node_tmp)
        models = os.path.join(self.tmp, "nodes", name, "models")
        os.makedirs(models, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(BASE_ENV)
        env.update({"RAY_TMPDIR": node_tmp, "POLLAMA_MODELS": models})
        if head:
            env.update(HEALTH_ENV)
        env.update(spec.get("env", {}))
        models = env["POLLAMA_MODELS"]
        args = [RAY, "start", "--block", f"--node-ip-address={ip}",
                f"--temp-dir={node_tmp}", "--disable-usage-stats",
                f"--num-cpus={spec.get('num_cpus', 1)}", "--num-gpus=0",
                f"--object-store-memory={spec.get('object_store_memory', 80 * 1000 * 1000)}"]
        if "memory" in spec:
            args.append(f"--memory={spec['memory']}")
        if spec.get("resources"):
            args.append("--resources=" + json.dumps(spec["resources"]))
        if head:
            args += ["--head", "--port=0", "--include-dashboard=false"]
        else:
            args.append(f"--address={self.address}")
        log_path = os.path.join(self.tmp, f"ray-{name}.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        node = RayNode(name=name, node_id="", ip=ip, models_dir=models, pids=[proc.pid],
                       proc=proc, log_path=log_path, temp_dir=node_tmp)
        self._all.append(node)
        self.nodes[name] = node
        try:
            if head:
                # ``ray start`` writes the GCS address here once everything is up.
                marker = os.path.join(node_tmp, "ray_current_cluster")
                self.address = self._wait(node, "the head's GCS address",
                                          lambda: _read(marker))
            info = self._query(self.address, ip, "alive", node)
        except BaseException:
            self.kill(name)  # leave no half-started node behind
            raise
        node.node_id = next(n["node_id"] for n in info if n["ip"] == ip and n["alive"])
        node.pids = session_pids(node.sid)
        return node

    def _wait(self, node: RayNode, what: str, check: Any) -> Any:
        end = time.monotonic() + DEADLINE
        while True:
            value = check()
            if value:
                return value
            if node.proc.poll() is not None:
                raise RuntimeError(f"ray node {node.name} exited while waiting for {what}:\n"
                                   + node.log())
            if time.monotonic() > end:
                raise RuntimeError(f"timed out waiting for {what}:\n" + node.log())
            time.sleep(0.05)

    def _query(self, gcs: str, ip: str = "", state: str = "alive",
               node: RayNode | None = None, deadline: float = DEADLINE) -> list[dict[str, Any]]:
        env = dict(os.environ)
        env.update(BASE_ENV)
        env["RAY_TMPDIR"] = self.ray_tmp
        r = subprocess.run([sys.executable, "-c", _NODES_SCRIPT, gcs, ip, state, str(deadline)],
                           env=env, capture_output=True, timeout=deadline + 60)
        try:
            out = json.loads(r.stdout.decode().strip().splitlines()[-1])
        except (IndexError, ValueError):
            out = {"error": r.stdout.decode() + r.stderr.decode()}
        if not isinstance(out, list):
            tail = node.log() if node else ""
            raise RuntimeError(f"GCS {gcs}: node {ip or '*'} not {state} ({out}):\n"
                               f"{r.stderr.decode()[-3000:]}\n{tail}")
        return out

    def gcs_nodes(self) -> list[dict[str, Any]]:
        """The GCS node table, as seen from a fresh subprocess: node_id, ip, alive, is_head,
        resources."""
        return self._query(self.address)

    def wait_dead(self, name: str, deadline: float = DEADLINE) -> None:
        """Wait until the GCS marks the node dead (it must have been killed first)."""
        self._query(self.address, self.nodes[name].ip, "dead", deadline=deadline)

    def node_pids(self, name: str) -> list[int]:
        node = self.nodes[name]
        node.pids = session_pids(node.sid)
        return node.pids

    def pids(self) -> list[int]:
        """Every live process of this cluster, all nodes."""
        return sorted(p for n in self._all for p in session_pids(n.sid))

    def rss_bytes(self) -> int:
        """Resident memory of all of the cluster's processes (sum of VmRSS)."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    # -- killing and stopping --------------------------------------------------------------
    @staticmethod
    def _signal_session(node: RayNode, sig: int) -> list[int]:
        pids = session_pids(node.sid)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return pids

    def _reap(self, node: RayNode, deadline: float, *, zombies: bool = False) -> bool:
        """Wait for the node's session to be empty (reaping our direct child; orphaned
        zombies are init's to reap, which takes a moment: ``zombies=True`` waits for that)."""
        end = time.monotonic() + deadline
        while True:
            node.proc.poll()
            if not session_pids(node.sid, zombies=zombies):
                return True
            if time.monotonic() > end:
                return False
            time.sleep(0.05)

    def kill(self, name: str) -> None:
        """SIGKILL every process of the node at once (a machine dying), and wait until they are
        gone. The node stays in ``nodes`` (its ``pids`` become empty); use ``wait_dead``
        to wait for the GCS to notice."""
        node = self.nodes[name]
        # Repeat: a process may fork between the /proc scan and the kill.
        end = time.monotonic() + DEADLINE
        while self._signal_session(node, signal.SIGKILL):
            if self._reap(node, 1.0):
                break
            if time.monotonic() > end:
                raise RuntimeError(f"node {name} survives SIGKILL: {session_pids(node.sid)}")
        node.proc.wait()
        self._reap(node, 10.0, zombies=True)
        node.pids = []

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every node's session (workers first, head last), SIGKILL what is left after
        ``grace`` seconds, then remove the Ray temp dir. Only this cluster's processes."""
        ordered = self._all[1:] + self._all[:1]
        for node in ordered:
            self._signal_session(node, signal.SIGTERM)
        end = time.monotonic() + grace
        for node in ordered:
            self._reap(node, max(0.0, end - time.monotonic()))
        for node in ordered:
            while self._signal_session(node, signal.SIGKILL):
                self._reap(node, 1.0)
            try:
                node.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self._reap(node, 10.0, zombies=True)
            node.pids = []
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
