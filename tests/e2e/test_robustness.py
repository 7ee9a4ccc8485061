"""Failure paths against the real server: client hang-up, runner crash, CLI auto-start."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, runner_pids, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture()
def own_server(smollm2_gguf: str) -> Iterator[Server]:
    with running_server("pollama-robust-", smollm2_gguf) as srv:
        yield srv


def test_client_hangup_cancels_generation(own_server: Server) -> None:
    body = {"model": "smol", "prompt": "Tell me a very long story.",
            "options": {"num_predict": 100000, "temperature": 0}}
    with httpx.stream("POST", f"{own_server.url}/api/generate", json=body, timeout=60) as r:
        lines = r.iter_lines()
        assert json.loads(next(lines))["done"] is False
        assert json.loads(next(lines))["done"] is False
    # The runner stopped that generation: a new request is served right after it, by the same
    # runner process, and completes.
    pids = runner_pids(own_server.proc.pid)
    r = httpx.post(f"{own_server.url}/api/generate", timeout=60, json={
        "model": "smol", "prompt": "Hi", "stream": False, "options": {"num_predict": 3}})
    assert r.status_code == 200 and r.json()["eval_count"] <= 3
    assert runner_pids(own_server.proc.pid) == pids


def test_runner_crash_mid_stream_is_a_final_error_line_then_recovers(own_server: Server) -> None:
    body = {"model": "smol", "prompt": "Tell me a very long story.",
            "options": {"num_predict": 100000}}
    with httpx.stream("POST", f"{own_server.url}/api/generate", json=body, timeout=60) as r:
        lines = r.iter_lines()
        assert json.loads(next(lines))["done"] is False
        (pid,) = runner_pids(own_server.proc.pid)
        os.kill(pid, signal.SIGKILL)
        rest = [json.loads(line) for line in lines if line]
    assert rest[-1].keys() == {"error"}
    assert "llama runner process has terminated" in rest[-1]["error"]
    # The next request gets a fresh runner.
    r = httpx.post(f"{own_server.url}/api/generate", timeout=120, json={
        "model": "smol", "prompt": "Hi", "stream": False, "options": {"num_predict": 3}})
    assert r.status_code == 200, r.text
    assert runner_pids(own_server.proc.pid) and runner_pids(own_server.proc.pid) != [pid]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_starts_a_background_server_when_none_answers(tmp_path: object) -> None:
    home = os.path.join(str(tmp_path), "home")
    os.makedirs(home)
    port = _free_port()
    env = {**os.environ, "HOME": home, "POLLAMA_HOST": f"127.0.0.1:{port}",
           "POLLAMA_MODELS": os.path.join(str(tmp_path), "models")}
    r = subprocess.run([sys.executable, "-m", "pollama.cli.main", "list"], env=env,
                       capture_output=True, text=True, timeout=120)
    try:
        assert r.returncode == 0, r.stderr
        assert r.stderr.count("\n") == 1 and "Starting pollama server" in r.stderr
        assert r.stdout.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
        assert os.path.exists(os.path.join(home, ".pollama", "logs", "server.log"))
        # Now it is up, a second command does not start another.
        r2 = subprocess.run([sys.executable, "-m", "pollama.cli.main", "list"], env=env,
                            capture_output=True, text=True, timeout=60)
        assert r2.returncode == 0 and r2.stderr == ""
    finally:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    environ = f.read()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if b"serve" in cmd and f"POLLAMA_HOST=127.0.0.1:{port}".encode() in environ:
                os.kill(int(entry), signal.SIGTERM)
        time.sleep(0.5)
