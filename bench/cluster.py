"""pollama on a Ray cluster against pollama on one machine. Prints a table of figures and ratios.

    python bench/cluster.py [--gguf PATH] [--tokens 256] [--repeats 3] [--rounds 3]

Needs Ray (``pip install -e '.[ray]'``). Every Ray node runs on this machine with its
listeners on loopback addresses (tests/raycluster.py), so "remote" here measures what the
actor relay costs, not a network; and two nodes share this machine's cores, so the aggregate
of two nodes shows the relay's overhead under load rather than a speed-up.

1. single stream: decode tok/s of one `/api/generate` stream with the runner local (no Ray)
   and on a Ray node, through the node's runner actor (target: at least 0.95 of local). Both
   servers run at once and are measured in turns, so the Ray daemons' background work on
   this machine weighs on both alike; medians of the rounds;
2. aggregate: two models, one stream each at once, on two nodes against one node serving
   both.

Decode rates count tokens after the first over the time after the first (compare.py's rule).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.compare import (CHATML, PROMPT, Pollama, default_gguf, http_client,  # noqa: E402
                           log, single)

GiB = 1 << 30


@contextmanager
def pollama(gguf: str, tmp: str, env: dict[str, str]) -> Iterator[tuple[Pollama, Pollama]]:
    """A pollama server with two models: the GGUF, and a copy with other bytes."""
    from tests.conftest import start_server, stop_server, upload_and_create

    srv = start_server(tmp, {"POLLAMA_NUM_PARALLEL": "1", "POLLAMA_KEEP_ALIVE": "30m", **env})
    try:
        other = os.path.join(tmp, "other.gguf")
        shutil.copyfile(gguf, other)
        with open(other, "ab") as f:
            f.write(b"\0" * 64)
        upload_and_create(srv.url, gguf, "one")
        upload_and_create(srv.url, other, "two")
        yield Pollama(srv.url, "one"), Pollama(srv.url, "two")
    finally:
        stop_server(srv)


@contextmanager
def on_cluster(gguf: str, tmp: str, nodes: int) -> Iterator[tuple[Pollama, Pollama]]:
    from tests.conftest import wait_for
    from tests.raycluster import RayCluster

    specs = [{"name": f"n{i}", "memory": 4 * GiB, "num_cpus": 2} for i in range(nodes)]
    with RayCluster(os.path.join(tmp, "ray"), specs) as cluster:
        with pollama(gguf, os.path.join(tmp, "api"), {
                **cluster.env, "POLLAMA_RAY_ADDRESS": cluster.address}) as targets:
            log_path = os.path.join(tmp, "api", "server.log")
            wait_for(f"{nodes} nodes to join",
                     lambda: open(log_path).read().count("node joined") >= nodes, 120)
            yield targets


def both_at_once(one: Pollama, two: Pollama, tokens: int) -> float:
    """Total tokens of one stream on each model at once, over wall time."""
    for target in (one, two):  # loaded (and placed) before the clock starts
        with http_client() as client:
            target.stream(client, CHATML.format(PROMPT), 4)
    with http_client() as client, cf.ThreadPoolExecutor(2) as pool:
        t0 = time.perf_counter()
        results = list(pool.map(lambda t: t.stream(client, CHATML.format(PROMPT), tokens),
                                (one, two)))
        wall = time.perf_counter() - t0
    return sum(n for _, n, _ in results) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", default=None)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="streams per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="local and remote measurements, taken in turns")
    args = parser.parse_args()
    gguf = args.gguf or default_gguf()
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="pollama-bench-cluster-") as tmp:
        log("local pollama and pollama on a 1-node Ray cluster, measured in turns ...")
        with pollama(gguf, os.path.join(tmp, "local"), {}) as (local_one, _), \
                on_cluster(gguf, os.path.join(tmp, "c1"), 1) as (one, two):
            local_rates, remote_rates = [], []
            for _ in range(args.rounds):  # in turns, so both see the same background
                local_rates.append(single(local_one, args.tokens, args.repeats))
                remote_rates.append(single(one, args.tokens, args.repeats))
            local, remote = statistics.median(local_rates), statistics.median(remote_rates)
            one_node = both_at_once(one, two, args.tokens)
        rows.append(("single stream, local runner", local, ""))
        rows.append(("single stream, runner on a Ray node", remote,
                     f"{remote / local:.2f}x local (target >= 0.95)"))
        log("pollama on a 2-node Ray cluster ...")
        with on_cluster(gguf, os.path.join(tmp, "c2"), 2) as (one, two):
            two_nodes = both_at_once(one, two, args.tokens)
        rows.append(("two models at once, one node", one_node, ""))
        rows.append(("two models at once, two nodes", two_nodes,
                     f"{two_nodes / one_node:.2f}x one node"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  tok/s    ratio")
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:7.1f}  {ratio}")


if __name__ == "__main__":
    main()
