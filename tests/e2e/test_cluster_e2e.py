"""pollama serve on a real two-node Ray cluster (loopback only), with real runners.

The API server has its own store; each Ray node has another (``POLLAMA_MODELS`` in the node's
environment). Each node's memory budget holds one runner of the test model and not two, so the
placement is visible. The tests run in order on one cluster; the last one kills a node.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server, upload_and_create, wait_for

ray = pytest.importorskip("ray", reason="the cluster tests need Ray: pip install 'pollama[ray]'")

from tests.raycluster import RayCluster  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.ray]

RUNNER = 247_391_296  # the test model's runner estimate at num_ctx 2048, one slot
NODE_MEMORY = RUNNER * 3 // 2  # one runner fits, two do not


@dataclass
class Setup:
    cluster: RayCluster
    server: Server
    trace: str
    names: dict[str, str]  # node id -> node name


@pytest.fixture(scope="module")
def setup(smollm2_gguf: str) -> Iterator[Setup]:
    tmp = tempfile.mkdtemp(prefix="pollama-cluster-")
    try:
        with RayCluster(tmp, [{"name": "head", "memory": NODE_MEMORY, "num_cpus": 2},
                              {"name": "n1", "memory": NODE_MEMORY, "num_cpus": 2}]) as cluster:
            trace = os.path.join(tmp, "trace.jsonl")
            srv = start_server(os.path.join(tmp, "api"), {
                **cluster.env, "POLLAMA_RAY_ADDRESS": cluster.address,
                "POLLAMA_NUM_PARALLEL": "1", "POLLAMA_TRACE": trace,
                "POLLAMA_RAY_STREAM_TIMEOUT": "20"})
            try:
                names = {n.node_id: n.name for n in cluster.nodes.values()}
                wait_for("both nodes to join", lambda: srv.log().count("node joined") >= 2, 120)
                upload_and_create(srv.url, smollm2_gguf, "smol")
                # A second model: the same weights with other bytes (its own digest).
                other = os.path.join(tmp, "other.gguf")
                shutil.copyfile(smollm2_gguf, other)
                with open(other, "ab") as f:
                    f.write(b"\0" * 64)
                upload_and_create(srv.url, other, "other")
                yield Setup(cluster=cluster, server=srv, trace=trace, names=names)
            finally:
                stop_server(srv)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _generate(url: str, model: str, num_predict: int = 8, **options: Any) -> dict[str, Any]:
    r = httpx.post(f"{url}/api/generate", json={
        "model": model, "prompt": "Count to ten.", "stream": False,
        "options": {"temperature": 0, "num_predict": num_predict, **options}}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def _ps(url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{url}/api/ps", timeout=30).json()["models"]


def _unload_all(url: str) -> None:
    for m in _ps(url):
        httpx.post(f"{url}/api/generate", json={"model": m["name"], "keep_alive": 0},
                   timeout=60)
    wait_for("every runner to stop", lambda: not _ps(url), 60)


def _commands(path: str, kind: str) -> list[dict[str, Any]]:
    out = []
    with open(path) as f:
        for line in f.readlines()[1:]:
            out += [c for c in json.loads(line)["commands"] if c["type"] == kind]
    return out


def _long_stream(setup: Setup, model: str, act: Callable[[], None]) -> list[dict[str, Any]]:
    """The lines of a long generation; ``act()`` runs once three have come. The stream must
    end with a line (an error line when ``act`` broke its runner), never with a cut."""
    lines: list[dict[str, Any]] = []
    try:
        with httpx.stream("POST", f"{setup.server.url}/api/generate", timeout=300, json={
                "model": model, "prompt": "Write a long story about a dragon.",
                "options": {"num_predict": 4000}}) as r:
            for line in r.iter_lines():
                lines.append(json.loads(line))
                if len(lines) == 3:
                    act()
    except httpx.HTTPError as exc:
        pytest.fail(f"{exc!r} after {lines[-2:]}\n{setup.server.log()[-6000:]}")
    return lines


def test_a_chat_runs_on_a_node_and_streams_back(setup: Setup) -> None:
    url = setup.server.url
    with httpx.stream("POST", f"{url}/api/chat", timeout=300, json={
            "model": "smol", "messages": [{"role": "user", "content": "Say hello."}],
            "options": {"temperature": 0, "num_predict": 16}}) as r:
        assert r.status_code == 200
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert len(lines) > 2 and lines[-1]["done"] is True
    assert "".join(line["message"]["content"] for line in lines[:-1]).strip()
    (loaded,) = _ps(url)
    node = loaded["node"]
    assert node["id"] in setup.names and node["address"].startswith("127.")
    # the runner is a process of that node, reading that node's own copy of the model
    store = setup.cluster.nodes[setup.names[node["id"]]].models_dir
    digest = loaded["digest"]
    blobs = os.listdir(os.path.join(store, "blobs"))
    assert any(b.startswith("sha256-") for b in blobs), blobs
    assert digest  # the API server's store still has its manifest (nothing moved)
    assert "node " + node["address"] in setup.server.log()


def test_the_blob_is_fetched_once_then_reused(setup: Setup) -> None:
    url = setup.server.url
    _unload_all(url)
    fetches = setup.server.log().count("path=/v2/pollama/blobs/blobs/")
    _generate(url, "smol")  # placed where its blob is cached
    assert setup.server.log().count("path=/v2/pollama/blobs/blobs/") == fetches
    spawns = _commands(setup.trace, "SpawnRunner")
    assert spawns[-1]["node"] == spawns[0]["node"]


def test_two_models_go_to_two_nodes(setup: Setup) -> None:
    url = setup.server.url
    _generate(url, "smol")
    _generate(url, "other")
    nodes = {m["name"]: m["node"]["id"] for m in _ps(url)}
    assert set(nodes) == {"smol:latest", "other:latest"}
    assert nodes["smol:latest"] != nodes["other:latest"]  # one node's budget holds one
    metrics = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("pollama_node_"):
            key, value = line.rsplit(" ", 1)
            metrics[key] = float(value)
    for node_id in nodes.values():  # per-node gauges: one runner each, the budget Ray says
        assert metrics[f'pollama_node_runners{{node="{node_id}"}}'] == 1
        assert metrics[f'pollama_node_memory_budget_bytes{{node="{node_id}"}}'] == NODE_MEMORY


def test_a_loaded_model_is_served_by_its_node(setup: Setup) -> None:
    url = setup.server.url
    before = len(_commands(setup.trace, "SpawnRunner"))
    runners = {m["name"]: m["node"]["id"] for m in _ps(url)}
    _generate(url, "smol")
    _generate(url, "other")
    assert len(_commands(setup.trace, "SpawnRunner")) == before  # nothing loaded again
    assert {m["name"]: m["node"]["id"] for m in _ps(url)} == runners


def test_replicas_share_the_load(setup: Setup) -> None:
    url = setup.server.url
    _unload_all(url)
    spawned = len(_commands(setup.trace, "SpawnRunner"))
    results: list[dict[str, Any]] = []

    def one() -> None:
        results.append(_generate(url, "smol", num_predict=48, num_replicas=2))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r["eval_count"] > 0 for r in results)
    spawns = _commands(setup.trace, "SpawnRunner")[spawned:]
    assert len({s["node"] for s in spawns}) == 2, spawns  # a replica on each node
    runner_ids = {s["runner_id"] for s in spawns}
    used = {d["runner_id"] for d in _commands(setup.trace, "Dispatch")} & runner_ids
    assert used == runner_ids  # both replicas served requests
    assert len({m["node"]["id"] for m in _ps(url)}) == 2


def test_the_trace_replays(setup: Setup) -> None:
    out = subprocess.run([sys.executable, "-m", "pollama.cli.main", "trace", "replay",
                          setup.trace], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    with open(setup.trace) as f:
        kinds = {json.loads(line)["event"]["type"] for line in f.readlines()[1:]}
    assert "NodeJoined" in kinds


def test_a_node_lost_mid_stream_ends_the_stream_and_the_next_request_goes_elsewhere(
        setup: Setup) -> None:
    """A third node joins and takes "other" (the two first nodes are full with the replicas
    of smol); killing it mid-stream ends the stream with an error line, and the next request
    loads "other" on a node left (evicting an idle replica). The head, which holds the Ray
    cluster itself, stays up."""
    url = setup.server.url
    assert len({m["node"]["id"] for m in _ps(url) if m["name"] == "smol:latest"}) == 2
    n2 = setup.cluster.add({"name": "n2", "memory": NODE_MEMORY, "num_cpus": 2})
    setup.names[n2.node_id] = "n2"
    wait_for("the third node to join", lambda: setup.server.log().count("node joined") >= 3,
             120)

    def kill_n2() -> None:
        where = {m["name"]: m["node"]["id"] for m in _ps(url)}
        assert where["other:latest"] == n2.node_id
        setup.cluster.kill("n2")

    lines = _long_stream(setup, "other", kill_n2)
    assert "error" in lines[-1], lines[-1]
    assert "terminated" in lines[-1]["error"]
    assert not any(line.get("done") for line in lines)
    reply = _generate(url, "other")
    assert reply["done"] is True
    where = {m["name"]: m["node"]["id"] for m in _ps(url)}
    assert where["other:latest"] in {n.node_id for n in setup.cluster.nodes.values()
                                     if n.name != "n2"}
    with open(setup.trace) as f:
        kinds = [json.loads(line)["event"]["type"] for line in f.readlines()[1:]]
    assert "NodeLost" in kinds


def _runner_pid(log: str, runner_id: int) -> int:
    for line in log.splitlines():
        if f"runner {runner_id} ready: node " in line:
            return int(line.rsplit(" pid ", 1)[1].split()[0].strip('"'))
    raise AssertionError(f"runner {runner_id} is not in the log")


def test_a_hung_node_ends_its_streams_after_the_stream_timeout(setup: Setup) -> None:
    """The runner's actor is frozen (SIGSTOP) mid-stream: no token and no heartbeat comes,
    and after POLLAMA_RAY_STREAM_TIMEOUT the stream ends with an error line instead of
    hanging; the next request is served."""
    url = setup.server.url
    frozen = 0

    def freeze_its_actor() -> None:
        nonlocal frozen
        dispatch = _commands(setup.trace, "Dispatch")[-1]
        runner = _runner_pid(setup.server.log(), dispatch["runner_id"])
        with open(f"/proc/{runner}/stat") as f:
            frozen = int(f.read().rsplit(")", 1)[1].split()[1])  # the runner's parent
        os.kill(frozen, signal.SIGSTOP)

    try:
        lines = _long_stream(setup, "smol", freeze_its_actor)
    finally:
        if frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen, signal.SIGCONT)
    assert "error" in lines[-1], lines[-1]
    assert "no word from node" in lines[-1]["error"], lines[-1]
    assert _generate(url, "smol")["done"] is True
