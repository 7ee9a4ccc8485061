"""Runners on a Ray cluster: node agents, runner actors, and the pipe that relays their bytes.

Imported only when ``POLLAMA_RAY_ADDRESS`` (or ``pollama serve --ray``) is set; ``pollama
serve`` is then the Ray driver and still the one API process. It decides nothing: the
scheduler (core/scheduler.py) places runners on nodes; this module carries out its orders.

* ``NodeAgent``: one actor per node (num_cpus=0). It says what the node has (its store's blobs)
  and makes sure a blob is in the node's own store (``POLLAMA_MODELS`` there) by pulling it from
  the API server's ``/v2`` over HTTP, ``pull``'s code path with its digest check
  (``registry_client.fetch_blob``). Model bytes never go through Ray's object store.
* ``RunnerActor``: one actor per runner, pinned to the node the scheduler named (node affinity,
  not soft), with ``max_restarts=0``: a runner that dies is the scheduler's to reload. It starts
  today's runner subprocess on its node and relays ``core/runner_protocol`` bytes both ways:
  ``send`` writes to the runner's stdin, ``output`` is a streaming generator of its stdout
  with a heartbeat (an empty chunk) every ``HEARTBEAT`` seconds.
* ``RayPipe``: the driver's side, a ``runner_process.RunnerPipe``, so ``RunnerProcess`` (and
  everything above it) is the same for a local and a remote runner. A stream silent for
  ``POLLAMA_RAY_STREAM_TIMEOUT`` seconds (no token, no heartbeat: a hung node) ends as a runner
  exit, as does an actor or node lost mid-stream; the node is then probed, and a dead one is
  reported lost before the requests on it hear of the exit.
* ``RayCluster``: connects, watches ``ray.nodes()`` (``NodeJoined``/``NodeLost`` for the
  scheduler), and spawns runners where the scheduler said.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import ray
import ray.exceptions
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pollama.core import config as config_core
from pollama.core import registry as reg
from pollama.core import scheduler as sched
from pollama.core.errors import RUNNER_TERMINATED, PollamaError
from pollama.core.manifest import Layer

from .runner_process import RUNNER_ARGV, StderrTail, exit_reason, runner_environ

log = logging.getLogger("pollama.cluster")

NAMESPACE = "pollama"
HEARTBEAT = 1.0  # seconds between a runner actor's keep-alive chunks
COALESCE = 0.03  # seconds of a runner's output a streaming item gathers
PAUSE = 0.1  # output after this long a quiet spell goes at once
PROBE_TIMEOUT = 3.0  # seconds a node's agent has to answer before the node counts as lost
WATCH_INTERVAL = 1.0  # seconds between looks at ray.nodes()
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
_RAY_ERRORS = (ray.exceptions.RayError, asyncio.CancelledError)


def _node_store() -> Any:
    from .store import Store
    return Store(config_core.load(os.environ, os.path.expanduser("~")).models_dir)


@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
class NodeAgent:
    """The pollama side of one node: its store, and fetching blobs into it."""

    def __init__(self) -> None:
        self.store = _node_store()
        os.makedirs(self.store.blobs_dir, exist_ok=True)

    def info(self) -> dict[str, Any]:
        blobs = []
        for filename in os.listdir(self.store.blobs_dir):
            if filename.startswith("sha256-") and len(filename) == 71:
                blobs.append(filename[len("sha256-"):])
        return {"models_dir": self.store.root, "blobs": blobs, "pid": os.getpid()}

    def ping(self) -> bool:
        return True

    async def ensure(self, origin: str, blobs: list[tuple[str, int]],
                     api_key: str | None) -> dict[str, str]:
        """Each ``(hex digest, size)`` in this node's store, fetched from ``origin`` (the API
        server, ``host:port``) if missing; its local path by digest."""
        from .registry_client import fetch_blob
        endpoint = reg.Endpoint(scheme="http", host=origin, namespace="pollama", model="blobs")
        paths = {}
        for hex_digest, size in blobs:
            if self.store.has_blob(hex_digest):
                paths[hex_digest] = self.store.blob_path(hex_digest)
                continue
            log.info("node agent: fetching sha256:%s (%d bytes) from %s", hex_digest, size, origin)
            layer = Layer(media_type=MODEL_MEDIA_TYPE, digest=f"sha256:{hex_digest}", size=size)
            paths[hex_digest] = await fetch_blob(self.store, endpoint, layer, api_key)
        return paths


@ray.remote(max_restarts=0, max_task_retries=0)
class RunnerActor:
    """Today's runner subprocess, on this actor's node; its bytes relayed to the driver."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr = StderrTail(None)

    async def start(self) -> tuple[int, str]:
        """Start the runner; its pid and this node's IP.

        Ray sets ``OMP_NUM_THREADS`` in its workers to the CPUs the actor reserved (here a
        share, so 1), which would hold llama.cpp's OpenMP pool to one thread: the runner's
        threads are ``num_thread``'s business, as on one machine."""
        env = runner_environ()
        env.pop("OMP_NUM_THREADS", None)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *RUNNER_ARGV, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        self.stderr.pid = self.proc.pid
        asyncio.ensure_future(self._read_stderr())
        return self.proc.pid, ray.util.get_node_ip_address()

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while data := await self.proc.stderr.read(65536):
            self.stderr.feed(data)

    async def send(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def output(self) -> AsyncIterator[bytes]:
        """The runner's stdout, and an empty chunk whenever it was quiet for a heartbeat.

        Each item costs Ray a round of bookkeeping in this worker and in the driver, about as
        much CPU as a token's decode step shares with, so while tokens flow what arrives
        within ``COALESCE`` seconds travels as one item. The first bytes after a pause go at
        once (time to first token is not delayed)."""
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        loop = asyncio.get_running_loop()
        read = asyncio.ensure_future(stdout.read(65536))
        last = 0.0  # when the last item went
        while True:
            done, _ = await asyncio.wait({read}, timeout=HEARTBEAT)
            if not done:
                yield b""
                continue
            data = read.result()
            if not data:
                return
            read = asyncio.ensure_future(stdout.read(65536))
            if loop.time() - last < PAUSE:  # streaming: gather what comes soon after
                deadline = loop.time() + COALESCE
                while len(data) < 65536:
                    done, _ = await asyncio.wait({read}, timeout=deadline - loop.time())
                    if not done:
                        break
                    more = read.result()
                    if not more:
                        yield data
                        return
                    data += more
                    read = asyncio.ensure_future(stdout.read(65536))
            last = loop.time()
            yield data

    async def wait(self) -> str:
        assert self.proc is not None
        code = await self.proc.wait()
        await asyncio.sleep(0)  # the last stderr lines
        return exit_reason(code, self.stderr.lines)

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


class RayPipe:
    """The driver's end of a ``RunnerActor``: a ``runner_process.RunnerPipe``."""

    def __init__(self, actor: Any, node_id: str, where: str, cluster: RayCluster) -> None:
        self.actor = actor
        self.node_id = node_id
        self.where = where
        self._cluster = cluster
        self._broken = ""  # why the stream ended early (actor or node lost, silence)

    async def send(self, data: bytes) -> None:
        try:
            await self.actor.send.remote(data)
        except _RAY_ERRORS as exc:
            self._broken = self._broken or _reason(exc)
            raise anyio.BrokenResourceError(self._broken) from None

    async def output(self) -> AsyncIterator[bytes]:
        chunks = self.actor.output.remote()
        timeout = self._cluster.stream_timeout
        while True:
            try:
                with anyio.fail_after(timeout):
                    ref = await chunks.__anext__()
                    data = await ref
            except StopAsyncIteration:
                return
            except TimeoutError:
                self._broken = f"no word from node {self.node_id[:12]} for {timeout:g} s"
                return
            except _RAY_ERRORS as exc:
                self._broken = _reason(exc)
                return
            if data:
                yield data

    async def wait(self) -> str:
        reason = ""
        if not self._broken:
            try:
                with anyio.fail_after(PROBE_TIMEOUT):
                    reason = str(await self.actor.wait.remote())
            except (TimeoutError, *_RAY_ERRORS) as exc:
                self._broken = _reason(exc)
        self.kill()  # the actor's resources go back to the node
        if reason:
            return reason
        if not await self._cluster.probe(self.node_id):
            return f"{RUNNER_TERMINATED}: {sched.NODE_LOST}: {self.node_id[:12]}"
        return f"{RUNNER_TERMINATED}: {self._broken}"

    def kill(self) -> None:
        try:
            ray.kill(self.actor, no_restart=True)
        except _RAY_ERRORS:
            pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer from its node"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


@dataclass
class _Node:
    node_id: str
    address: str
    cpus: float
    memory: int
    agent: Any


class RayCluster:
    """The driver's view of the cluster, and the hands that carry out placement."""

    def __init__(self, address: str, *, api_key: str | None = None, max_loaded: int = 3,
                 stream_timeout: float = 30.0, load_timeout: float = 300.0) -> None:
        self.address = address
        self.api_key = api_key
        self.max_loaded = max_loaded
        self.stream_timeout = stream_timeout
        self.load_timeout = load_timeout
        self.origin = ""  # host:port where nodes fetch blobs (the API server), once it listens
        self.nodes: dict[str, _Node] = {}
        self._feed: Callable[[sched.Event], None] | None = None

    async def connect(self) -> None:
        def init() -> None:
            ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False,
                     configure_logging=False)
        await anyio.to_thread.run_sync(init)
        log.info("joined the Ray cluster at %s", self.address)

    def set_origin(self, host: str, port: int) -> None:
        """Where nodes reach this server's ``/v2``: its address, or this node's IP when it
        listens on every interface."""
        if host in ("0.0.0.0", "::", ""):
            host = ray.util.get_node_ip_address()
        self.origin = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def address_of(self, node_id: str) -> str:
        node = self.nodes.get(node_id)
        return node.address if node else ""

    # -- nodes ------------------------------------------------------------------------------------
    async def watch(self, feed: Callable[[sched.Event], None]) -> None:
        """Tell the scheduler of nodes joining and lost, for as long as the server runs."""
        self._feed = feed
        while True:
            try:
                seen = await anyio.to_thread.run_sync(ray.nodes)
            except Exception as exc:  # the GCS restarting: try again
                log.warning("cannot list Ray nodes: %s", exc)
                seen = None
            if seen is not None:
                alive = {n["NodeID"]: n for n in seen if n.get("Alive")}
                for node_id in [n for n in self.nodes if n not in alive]:
                    self.lost(node_id, sched.NODE_LOST)
                for node_id, raw in alive.items():
                    if node_id not in self.nodes:
                        await self._join(node_id, raw)
            await anyio.sleep(WATCH_INTERVAL)

    async def _join(self, node_id: str, raw: dict[str, Any]) -> None:
        resources = raw.get("Resources", {})
        agent = NodeAgent.options(  # type: ignore[attr-defined]
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
        try:
            with anyio.fail_after(self.load_timeout):
                info = await agent.info.remote()
        except (TimeoutError, *_RAY_ERRORS) as exc:
            log.warning("node %s: its agent did not start: %s", node_id[:12], _reason(exc))
            ray.kill(agent)
            return
        node = _Node(node_id=node_id, address=raw.get("NodeManagerAddress", ""),
                     cpus=float(resources.get("CPU", 0)), memory=int(resources.get("memory", 0)),
                     agent=agent)
        self.nodes[node_id] = node
        devices = tuple(f"GPU:{i}" for i in range(int(resources.get("GPU", 0))))
        log.info("node joined", extra={"fields": {
            "node": node_id[:12], "address": node.address, "memory": node.memory,
            "cpus": node.cpus, "devices": list(devices), "models": info["models_dir"],
            "blobs": len(info["blobs"])}})
        self._tell(sched.NodeJoined(node_id=node_id, memory=node.memory, devices=devices,
                                    models=tuple(sorted(info["blobs"]))))

    def lost(self, node_id: str, message: str) -> None:
        if self.nodes.pop(node_id, None) is not None:
            log.warning("node lost", extra={"fields": {"node": node_id[:12], "why": message}})
            self._tell(sched.NodeLost(node_id=node_id, message=message))

    def _tell(self, event: sched.Event) -> None:
        if self._feed is not None:
            self._feed(event)

    async def probe(self, node_id: str) -> bool:
        """Is the node alive (its agent answers)? A dead one is reported lost at once."""
        node = self.nodes.get(node_id)
        if node is None:
            return False
        try:
            with anyio.fail_after(PROBE_TIMEOUT):
                await node.agent.ping.remote()
            return True
        except (TimeoutError, *_RAY_ERRORS) as exc:
            self.lost(node_id, f"{sched.NODE_LOST}: {_reason(exc)}")
            return False

    # -- runners ----------------------------------------------------------------------------------
    async def spawn(self, node_id: str, size: int,
                    blobs: list[tuple[str, int]]) -> tuple[RayPipe, dict[str, str]]:
        """A runner actor on ``node_id`` with ``blobs`` in that node's store; the pipe to it
        and each blob's path there."""
        node = self.nodes.get(node_id)
        if node is None:
            raise PollamaError(f"{sched.NODE_LOST}: {node_id[:12]}")
        if not self.origin:
            raise PollamaError("the server's address for cluster nodes is not known yet")
        with anyio.fail_after(self.load_timeout):
            paths = await node.agent.ensure.remote(self.origin, blobs, self.api_key)
            # Each runner reserves its share of the node's CPUs and its memory estimate (at most
            # the node's: the scheduler may put a runner too big for every node alone on one).
            options: dict[str, Any] = {
                "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False),
                "num_cpus": min(1.0, node.cpus / max(self.max_loaded, 1))}
            if node.memory and size:
                options["memory"] = min(size, node.memory)
            actor = RunnerActor.options(**options).remote()  # type: ignore[attr-defined]
            try:
                pid, ip = await actor.start.remote()
            except BaseException:
                ray.kill(actor)
                raise
        return RayPipe(actor, node_id, f"node {ip} {node_id[:12]} pid {pid}", self), paths

    async def close(self) -> None:
        for node in list(self.nodes.values()):
            try:
                ray.kill(node.agent)
            except _RAY_ERRORS:
                pass
        await anyio.to_thread.run_sync(ray.shutdown)
