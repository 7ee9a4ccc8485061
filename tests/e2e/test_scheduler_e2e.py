"""The scheduler against the real server and runners: ps, stop, keep_alive expiry, eviction,
reload, queue-full 503. Each scenario records a POLLAMA_TRACE, which must replay identically."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import httpx
import pytest

from pollama.core import trace
from tests.conftest import Server, runner_pids, start_server, stop_server, upload_and_create

pytestmark = pytest.mark.e2e

TRACES_OUT = os.environ.get("POLLAMA_RECORD_TRACES")  # set to refresh tests/traces/


@pytest.fixture(scope="module")
def second_gguf(smollm2_gguf: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same weights with trailing bytes: a second model with its own digest."""
    path = str(tmp_path_factory.mktemp("m2") / "variant.gguf")
    shutil.copyfile(smollm2_gguf, path)
    with open(path, "ab") as f:
        f.write(b"pollama-variant-2")
    return path


def _server(tmp: str, gguf: str, env: dict[str, str], models: dict[str, str]) -> Server:
    srv = start_server(tmp, {"POLLAMA_TRACE": os.path.join(tmp, "trace.jsonl"), **env})
    for name, path in models.items():
        upload_and_create(srv.url, path, name)
    return srv


def _finish(srv: Server, name: str) -> None:
    """Stop the server, then replay its trace through the core: every step must match."""
    stop_server(srv)
    path = srv.env["POLLAMA_TRACE"]
    with open(path) as f:
        result = trace.replay(f)
    assert result.ok, (result.mismatch, result.got)
    assert result.steps > 0
    if TRACES_OUT:
        shutil.copyfile(path, os.path.join(TRACES_OUT, f"{name}.jsonl"))


def ps(srv: Server) -> list[dict[str, object]]:
    r = httpx.get(f"{srv.url}/api/ps", timeout=30)
    assert r.status_code == 200
    return list(r.json()["models"])


def gen(srv: Server, model: str, **extra: object) -> httpx.Response:
    body = {"model": model, "prompt": "Hi", "stream": False,
            "options": {"num_predict": 4, "temperature": 0}, **extra}
    return httpx.post(f"{srv.url}/api/generate", json=body, timeout=120)


def wait_for(cond: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.2)


def cli(srv: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pollama.cli.main", *args], env=srv.env,
                          capture_output=True, text=True, timeout=120)


def test_ps_and_stop(smollm2_gguf: str, tmp_path: object) -> None:
    srv = _server(str(tmp_path), smollm2_gguf, {}, {"smol": smollm2_gguf})
    try:
        assert ps(srv) == []
        assert gen(srv, "smol", keep_alive="10m").status_code == 200
        (m,) = ps(srv)
        assert m["name"] == m["model"] == "smol:latest"
        assert m["size_vram"] == 0 and m["context_length"] == 2048
        assert int(m["size"]) > 98_000_000  # type: ignore[call-overload]
        assert str(m["expires_at"]) > time.strftime("%Y-%m-%d")
        assert set(m) >= {"digest", "details", "expires_at"}
        table = cli(srv, "ps")
        assert table.returncode == 0, table.stderr
        header, row = table.stdout.splitlines()
        assert header.split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
        assert "100% CPU" in row and "2048" in row and "minutes from now" in row
        stopped = cli(srv, "stop", "smol")
        assert stopped.returncode == 0, stopped.stderr
        wait_for(lambda: ps(srv) == [])
        missing = cli(srv, "stop", "nope")
        assert missing.returncode != 0 and 'couldn\'t find model "nope" to stop' in missing.stderr
        # keep_alive 0 with an empty prompt answers "unload".
        r = httpx.post(f"{srv.url}/api/generate", json={"model": "smol", "keep_alive": 0})
        assert r.json()["done_reason"] == "unload"
    finally:
        _finish(srv, "ps_stop_unload")


def test_keep_alive_expiry_and_forever(smollm2_gguf: str, tmp_path: object) -> None:
    srv = _server(str(tmp_path), smollm2_gguf, {}, {"smol": smollm2_gguf})
    try:
        assert gen(srv, "smol", keep_alive="1s").status_code == 200
        assert len(ps(srv)) == 1
        wait_for(lambda: ps(srv) == [])  # expired by the scheduler's own timer
        assert gen(srv, "smol", keep_alive=-1).status_code == 200
        (m,) = ps(srv)
        assert str(m["expires_at"]).startswith("23")  # "forever": around year 2318
        assert gen(srv, "smol", keep_alive=0).status_code == 200  # unload after this request
        wait_for(lambda: ps(srv) == [])
    finally:
        _finish(srv, "keep_alive")


def test_eviction_with_max_loaded_models_1(smollm2_gguf: str, second_gguf: str,
                                           tmp_path: object) -> None:
    srv = _server(str(tmp_path), smollm2_gguf, {"POLLAMA_MAX_LOADED_MODELS": "1"},
                  {"one": smollm2_gguf, "two": second_gguf})
    try:
        assert gen(srv, "one").status_code == 200
        assert [m["name"] for m in ps(srv)] == ["one:latest"]
        assert gen(srv, "two").status_code == 200
        assert [m["name"] for m in ps(srv)] == ["two:latest"]
        assert gen(srv, "one").status_code == 200
        assert [m["name"] for m in ps(srv)] == ["one:latest"]
    finally:
        _finish(srv, "evict_lru_max_loaded_1")


def test_reload_when_num_ctx_changes(smollm2_gguf: str, tmp_path: object) -> None:
    srv = _server(str(tmp_path), smollm2_gguf, {}, {"smol": smollm2_gguf})
    try:
        assert gen(srv, "smol").status_code == 200
        assert ps(srv)[0]["context_length"] == 2048
        r = gen(srv, "smol", options={"num_ctx": 1024, "num_predict": 2})
        assert r.status_code == 200
        wait_for(lambda: [m["context_length"] for m in ps(srv)] == [1024])
    finally:
        _finish(srv, "reload_num_ctx")


def test_queue_full_is_503(smollm2_gguf: str, tmp_path: object) -> None:
    srv = _server(str(tmp_path), smollm2_gguf,
                  {"POLLAMA_MAX_QUEUE": "1", "POLLAMA_NUM_PARALLEL": "1"}, {"smol": smollm2_gguf})
    try:
        assert httpx.post(f"{srv.url}/api/generate", json={"model": "smol"}).status_code == 200
        statuses: list[int] = []
        bodies: list[dict[str, object]] = []

        def long_request() -> None:
            r = httpx.post(f"{srv.url}/api/generate", timeout=300, json={
                "model": "smol", "prompt": "Tell me a long story.", "stream": False,
                "options": {"num_predict": 200}})
            statuses.append(r.status_code)
            bodies.append(r.json())

        threads = [threading.Thread(target=long_request) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.3)
        for t in threads:
            t.join()
        assert sorted(statuses).count(200) >= 2
        assert 503 in statuses
        busy = [b for b in bodies if "error" in b]
        assert busy and all(b == {"error": "server busy, please try again.  maximum pending "
                                           "requests exceeded"} for b in busy)
    finally:
        _finish(srv, "queue_full_503")


def test_runner_load_failure_is_reported_and_replaced(smollm2_gguf: str, second_gguf: str,
                                                       tmp_path: object) -> None:
    srv = _server(str(tmp_path), smollm2_gguf, {}, {"smol": smollm2_gguf, "two": second_gguf})
    try:
        assert gen(srv, "smol", options={"num_batch": 0}).status_code == 400
        # A blob that vanished from the store makes the runner's load fail: 500 with the reason.
        import hashlib

        with open(second_gguf, "rb") as f:
            blob = os.path.join(srv.models_dir, "blobs",
                                "sha256-" + hashlib.sha256(f.read()).hexdigest())
        os.rename(blob, blob + ".away")
        r = gen(srv, "two")
        assert r.status_code == 500 and "model file not found" in r.json()["error"]
        # A blob with a damaged header: 500 naming the damage.
        with open(blob + ".away", "rb") as src, open(blob, "wb") as dst:
            dst.write(src.read(1 << 20))
        r = gen(srv, "two")
        assert r.status_code == 500 and "is damaged" in r.json()["error"]
        # Tensor data cut short, header intact: the runner fails to load; 500 with the reason.
        with open(blob + ".away", "rb") as src, open(blob, "wb") as dst:
            dst.write(src.read(50 << 20))
        r = gen(srv, "two")
        assert r.status_code == 500 and "unable to load model" in r.json()["error"]
        assert ps(srv) == []
        os.replace(blob + ".away", blob)
        assert gen(srv, "two").status_code == 200  # a fresh runner replaces the failed one
        assert [m["name"] for m in ps(srv)] == ["two:latest"]
    finally:
        _finish(srv, "load_failure")


def _concurrently(*calls: object) -> list[httpx.Response]:
    out: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda c=c: out.append(c()))  # type: ignore[misc]
               for c in calls]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    return out


def test_single_flight_loading_of_two_models(smollm2_gguf: str, second_gguf: str,
                                             tmp_path: object) -> None:
    srv = _server(str(tmp_path), smollm2_gguf, {}, {"one": smollm2_gguf, "two": second_gguf})
    try:
        rs = _concurrently(lambda: gen(srv, "one"), lambda: gen(srv, "two"),
                           lambda: gen(srv, "one"))
        assert [r.status_code for r in rs] == [200, 200, 200]
        assert sorted(m["name"] for m in ps(srv)) == ["one:latest", "two:latest"]
    finally:
        _finish(srv, "single_flight_two_models")
    with open(srv.env["POLLAMA_TRACE"]) as f:
        _, steps = trace.parse(f.readlines())
        spawns = [st.lineno for st in steps for c in st.commands
                  if type(c).__name__ == "SpawnRunner"]
    assert len(spawns) == 2  # one load at a time, the second runner spawned on a later step
    assert spawns[0] != spawns[1]


def test_num_parallel_shares_one_runner(smollm2_gguf: str, tmp_path: object) -> None:
    srv = _server(str(tmp_path), smollm2_gguf, {"POLLAMA_NUM_PARALLEL": "2"},
                  {"smol": smollm2_gguf})
    try:
        assert httpx.post(f"{srv.url}/api/generate", json={"model": "smol"}).status_code == 200
        rs = _concurrently(*(lambda: gen(srv, "smol", options={"num_predict": 30})
                             for _ in range(3)))
        assert [r.status_code for r in rs] == [200, 200, 200]
        assert len(ps(srv)) == 1
    finally:
        _finish(srv, "num_parallel_2")


def test_runner_crash_is_reported_and_replaced(smollm2_gguf: str, tmp_path: object) -> None:
    import signal

    srv = _server(str(tmp_path), smollm2_gguf, {}, {"smol": smollm2_gguf})
    try:
        assert gen(srv, "smol").status_code == 200
        (pid,) = runner_pids(srv.proc.pid)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: ps(srv) == [])  # the scheduler learned of the exit
        assert gen(srv, "smol").status_code == 200  # and a fresh runner serves the next request
    finally:
        _finish(srv, "runner_crash")
