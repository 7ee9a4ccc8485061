"""Pull throughput between two local pollama servers, in MB/s.

    python bench/pull_throughput.py [--gguf PATH] [--repeats 5]

Starts server A (the registry) and server B on free ports with temporary stores, creates the
model on A from the GGUF (default: the 98 MB SmolLM2 test model, fetched into the test cache if
needed), then pulls ``127.0.0.1:<A>/library/bench:latest`` into B with ``insecure`` over
``/api/pull`` ``repeats`` times, deleting it from B in between. Prints each run, the median, and
for comparison the rate of one plain streaming GET of the same blob from A's ``/v2/`` endpoint
(what a single connection delivers), with the ratio of the two.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import httpx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def _gguf(path: str | None) -> str:
    if path:
        return path
    from tests import conftest

    # The pytest fixture's function (fetches the model into the test cache if needed).
    fixture = conftest.smollm2_gguf
    fetch = getattr(fixture, "__wrapped__", None) or getattr(fixture, "_get_wrapped_function")()
    return str(fetch())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gguf", help="GGUF to share (default: the SmolLM2 test model)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from tests.conftest import sha256_file, start_server, stop_server, upload_and_create

    gguf = _gguf(args.gguf)
    size = os.path.getsize(gguf)
    hex_digest = sha256_file(gguf)
    mb = size / 1e6
    with tempfile.TemporaryDirectory() as ta, tempfile.TemporaryDirectory() as tb:
        a = start_server(ta)
        b = start_server(tb)
        try:
            upload_and_create(a.url, gguf, "bench")
            name = f"127.0.0.1:{a.port}/library/bench:latest"
            rates = []
            with httpx.Client(base_url=b.url, timeout=600) as c:
                for i in range(args.repeats):
                    # Start each run from an empty store on B (its files only; B keeps running).
                    shutil.rmtree(os.path.join(b.models_dir, "blobs"), ignore_errors=True)
                    shutil.rmtree(os.path.join(b.models_dir, "manifests"), ignore_errors=True)
                    started = time.perf_counter()
                    r = c.post("/api/pull", json={"model": name, "insecure": True,
                                                  "stream": False})
                    elapsed = time.perf_counter() - started
                    if r.status_code != 200 or r.json() != {"status": "success"}:
                        raise SystemExit(f"pull failed: {r.status_code} {r.text}")
                    rates.append(mb / elapsed)
                    print(f"run {i + 1}: {mb:.1f} MB in {elapsed:.2f} s = {rates[-1]:.1f} MB/s")

            # One connection, no parts, no disk on the client side: the serving side's ceiling.
            blob = f"{a.url}/v2/library/bench/blobs/sha256:{hex_digest}"
            single = []
            for _ in range(3):
                started = time.perf_counter()
                n = 0
                with httpx.stream("GET", blob, timeout=600) as r:
                    for chunk in r.iter_raw():
                        n += len(chunk)
                single.append(n / 1e6 / (time.perf_counter() - started))
        finally:
            stop_server(a)
            stop_server(b)

    pull = statistics.median(rates)
    raw = statistics.median(single)
    print(f"pull (A -> B, /api/pull, verified, on disk): median {pull:.1f} MB/s over "
          f"{len(rates)} runs of {mb:.1f} MB")
    print(f"single GET of the blob from A's /v2/ (no disk, no hash): median {raw:.1f} MB/s")
    print(f"ratio pull / single GET: {pull / raw:.2f}")


if __name__ == "__main__":
    main()
